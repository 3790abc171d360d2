//! Reading a policy directory into a compiled [`Bundle`].
//!
//! Loading is split in two so the watcher can cheaply tell whether anything changed: [`scan`] reads the
//! files and computes the digest, [`Bundle::compile`] parses and compiles them. Every problem found in
//! the files (parse errors, bad data documents, data conflicts) is collected before giving up, so an
//! operator fixes a broken bundle in one round.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use regorus::Value;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::RegoVM;
use sha2::{Digest, Sha256};

use super::{Backend, ENTRYPOINT, PolicyConfig, PolicyError};

/// One file of the bundle, as read from disk.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    /// Path relative to the policy directory, `/`-separated: stable across machines, so it is what
    /// the digest covers and what error messages show.
    pub rel: String,
    pub kind: FileKind,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Rego,
    DataJson,
    DataYaml,
}

/// The files of a policy directory and their digest.
#[derive(Debug)]
pub(crate) struct Scan {
    pub files: Vec<SourceFile>,
    pub digest: String,
    /// The detached signature (`.signature`), when the directory has one.
    pub signature: Option<Vec<u8>>,
}

impl Scan {
    /// The digest, extended by the signature's when there is one: a change of signature alone is a
    /// change for the watcher (a rejected unsigned bundle is retried once it is signed).
    pub(crate) fn fingerprint(&self) -> String {
        match &self.signature {
            Some(sig) => format!("{}+{}", self.digest, hex::encode(Sha256::digest(sig))),
            None => self.digest.clone(),
        }
    }
}

pub(crate) fn classify(name: &str) -> Option<FileKind> {
    if name.ends_with(".rego") {
        Some(FileKind::Rego)
    } else if name == "data.json" {
        Some(FileKind::DataJson)
    } else if name == "data.yaml" || name == "data.yml" {
        Some(FileKind::DataYaml)
    } else {
        None
    }
}

/// Read every `*.rego`, `data.json` and `data.yaml` under `dir` (recursively; hidden entries such as
/// `.git` are skipped) and compute the bundle digest: SHA-256 over the files sorted by relative path,
/// each contributing its path, a NUL, its length (u64 big-endian) and its bytes.
pub(crate) fn scan(dir: &Path) -> Result<Scan, PolicyError> {
    // The root is named as a directory, with the fix, rather than as an OS error on a "file".
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PolicyError::MissingDir {
                dir: dir.to_path_buf(),
            });
        }
        Ok(m) if !m.is_dir() => {
            return Err(PolicyError::NotADir {
                dir: dir.to_path_buf(),
            });
        }
        _ => {}
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    let digest = digest_of(&files);
    let signature_path = dir.join(super::signature::SIGNATURE_FILE);
    let signature = match std::fs::read(&signature_path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&signature_path, e)),
    };
    Ok(Scan {
        files,
        digest,
        signature,
    })
}

/// The bundle digest of `files`, sorted by relative path (see [`scan`]).
pub(crate) fn digest_of(files: &[SourceFile]) -> String {
    let mut hasher = Sha256::new();
    for f in files {
        hasher.update(f.rel.as_bytes());
        hasher.update([0u8]);
        hasher.update((f.bytes.len() as u64).to_be_bytes());
        hasher.update(&f.bytes);
    }
    hex::encode(hasher.finalize())
}

fn io_err(path: &Path, error: std::io::Error) -> PolicyError {
    PolicyError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) -> Result<(), PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| io_err(&path, e))?;
        if file_type.is_dir() {
            walk(root, &path, out)?;
        } else if let Some(kind) = classify(name) {
            // Follow symlinked files (ConfigMap mounts are symlinks) but not symlinked directories.
            if file_type.is_symlink() && !path.is_file() {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push(SourceFile { rel, kind, bytes });
        }
    }
    Ok(())
}

/// Where data from `rel` goes: as in OPA bundles, `a/b/data.json` is placed under `data.a.b`.
fn data_prefix(rel: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = rel.split('/').collect();
    parts.pop();
    parts
}

/// Why a data file cannot be loaded. Each message starts with the file (and line, where known).
#[derive(Debug, thiserror::Error)]
enum DataFileError {
    #[error("{file}: not UTF-8: {source}")]
    NotUtf8 {
        file: String,
        source: std::str::Utf8Error,
    },
    #[error("{file}:{line}: invalid JSON: {source}")]
    Json {
        file: String,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{file}:{line}: invalid YAML: {source}")]
    Yaml {
        file: String,
        line: usize,
        source: yaml_serde::Error,
    },
    #[error("{file}: not a data file")]
    NotData { file: String },
    #[error("{file}:1: the top level of a data file must be an object")]
    NotObject { file: String },
    #[error("{file}: {source}")]
    Convert {
        file: String,
        source: super::value::ToValueError,
    },
}

/// Parse the data file into a regorus value, wrapped under its directory prefix.
fn parse_data(f: &SourceFile) -> Result<Value, DataFileError> {
    let file = || f.rel.clone();
    let text = std::str::from_utf8(&f.bytes).map_err(|source| DataFileError::NotUtf8 {
        file: file(),
        source,
    })?;
    let doc: serde_json::Value = match f.kind {
        FileKind::DataJson => serde_json::from_str(text).map_err(|source| DataFileError::Json {
            file: file(),
            // serde_json reports line 0 for EOF errors on empty input
            line: source.line().max(1),
            source,
        })?,
        FileKind::DataYaml => yaml_serde::from_str(text).map_err(|source| DataFileError::Yaml {
            file: file(),
            line: source.location().map(|l| l.line()).unwrap_or(1),
            source,
        })?,
        FileKind::Rego => return Err(DataFileError::NotData { file: file() }),
    };
    let doc = match doc {
        serde_json::Value::Object(_) => doc,
        // An empty YAML file is null: treat as no data rather than an error.
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        _ => return Err(DataFileError::NotObject { file: file() }),
    };
    let mut value = super::value::to_value(&doc).map_err(|source| DataFileError::Convert {
        file: file(),
        source,
    })?;
    for key in data_prefix(&f.rel).into_iter().rev() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(Value::from(key), value);
        value = Value::from(map);
    }
    Ok(value)
}

/// regorus reports `\n--> file:line:col\n | source\n | ^\nerror: message`; turn that into the one-line
/// `file:line:col: message` that editors and CI annotate. Anything else is kept, prefixed with the file.
pub(crate) fn tidy_rego_error(rel: &str, message: &str) -> String {
    // Nested errors repeat the frame; the innermost (last) one is the precise one.
    let location = message
        .lines()
        .rev()
        .find_map(|l| l.trim_start().strip_prefix("--> "))
        .map(str::trim);
    let error = message
        .lines()
        .rev()
        .find_map(|l| l.trim_start().strip_prefix("error: "))
        .map(str::trim);
    match (location, error) {
        (Some(loc), Some(err)) => format!("{loc}: {err}"),
        _ => format!("{rel}: {}", message.trim()),
    }
}

/// `(relative path, package)` of each Rego module, in file order, e.g. `("a/x.rego", "data.x")`.
pub(crate) type ModulePackages = Vec<(String, String)>;

/// Build an interpreter [`regorus::Engine`] with every module and data document of `files`, collecting
/// all problems. Returns the engine and the package of each module.
pub(crate) fn build_engine(
    files: &[SourceFile],
    config_timer: Option<regorus::utils::limits::ExecutionTimerConfig>,
) -> Result<(regorus::Engine, ModulePackages), Vec<String>> {
    let mut engine = regorus::Engine::new();
    if let Some(t) = config_timer {
        engine.set_execution_timer_config(t);
    }
    // As in OPA (and the VM's default): a failing builtin makes its expression undefined instead of
    // aborting the whole evaluation, so one bad rule cannot suppress every other decision.
    engine.set_strict_builtin_errors(false);
    let mut problems = Vec::new();
    let mut packages = Vec::new();
    for f in files {
        match f.kind {
            FileKind::Rego => {
                let text = match String::from_utf8(f.bytes.clone()) {
                    Ok(t) => t,
                    Err(e) => {
                        problems.push(format!("{}: not UTF-8: {e}", f.rel));
                        continue;
                    }
                };
                match engine.add_policy(f.rel.clone(), text) {
                    Ok(pkg) => packages.push((f.rel.clone(), pkg)),
                    Err(e) => problems.push(tidy_rego_error(&f.rel, &e.to_string())),
                }
            }
            FileKind::DataJson | FileKind::DataYaml => match parse_data(f) {
                Ok(v) => {
                    if let Err(e) = engine.add_data(v) {
                        problems.push(format!(
                            "{}:1: conflicts with data from another file: {e}",
                            f.rel
                        ));
                    }
                }
                Err(p) => problems.push(p.to_string()),
            },
        }
    }
    if problems.is_empty() {
        Ok((engine, packages))
    } else {
        Err(problems)
    }
}

/// Process-unique id of a compiled bundle; per-thread workers compare it to know when to rebuild.
static NEXT_BUNDLE_ID: AtomicU64 = AtomicU64::new(1);

/// How a bundle is evaluated.
pub(crate) enum Executable {
    /// Bytecode for the regorus VM plus the merged data document.
    Vm { program: Arc<Program>, data: Value },
    /// The tree-walking interpreter, prepared once; each thread evaluates on its own clone.
    Interpreter { engine: Box<regorus::Engine> },
}

/// Why the VM path could not be used.
enum VmFailure {
    /// A language feature the 0.14 VM compiler lacks (`with`, `walk`, some partial objects…): the
    /// interpreter can still run the bundle.
    Unsupported(String),
    /// A real policy error the interpreter would only hit at evaluation time (unknown function,
    /// undefined variable, data/rule conflict): refuse the bundle.
    Invalid(String),
}

/// Compile to bytecode and probe a VM once, so data/rule conflicts are load errors, not per-alert ones.
fn compile_vm(
    compiled: &regorus::CompiledPolicy,
    engine: &regorus::Engine,
) -> Result<(Arc<Program>, Value), VmFailure> {
    use regorus::languages::rego::compiler::CompilerError as E;
    let program = Compiler::compile_from_policy(compiled, &[ENTRYPOINT]).map_err(|e| {
        let raw = e.to_string();
        let text = tidy_rego_error("bytecode compiler", &raw);
        // Errors from nested compilation arrive wrapped in `General`; their text still starts with
        // the variant's message, so classify on both.
        let invalid = matches!(
            e.error,
            E::UnknownFunction { .. }
                | E::UnknownBuiltinFunction { .. }
                | E::UndefinedVariable { .. }
                | E::DirectDataAccess
        ) || [
            "error: Unknown function: ",
            "error: Unknown builtin function: ",
            "error: Undefined variable: ",
            "error: Direct access to 'data' root",
        ]
        .iter()
        .any(|needle| raw.contains(needle));
        if invalid {
            VmFailure::Invalid(text)
        } else {
            VmFailure::Unsupported(text)
        }
    })?;
    let data = engine.get_data();
    let mut vm = RegoVM::new();
    vm.load_program(program.clone());
    vm.set_data(data.clone())
        .map_err(|e| VmFailure::Invalid(format!("data conflicts with a rule: {e}")))?;
    Ok((program, data))
}

/// A compiled, immutable version of the policy directory.
pub(crate) struct Bundle {
    pub id: u64,
    pub digest: Arc<str>,
    pub executable: Executable,
    pub timer: regorus::utils::limits::ExecutionTimerConfig,
    pub max_instructions: usize,
    /// Whether any module mentions `raw`. Converting the original document into the policy input
    /// costs as much as a quarter of an evaluation, so bundles that never read `input.raw` are given
    /// an input without it. Reading `raw` in any form needs the word, so this cannot hide it from a
    /// policy that uses it.
    pub uses_raw: bool,
    /// When this version was compiled (startup or the reload that brought it in), for the console.
    pub loaded_at: chrono::DateTime<chrono::Utc>,
}

/// Whether `source` contains `raw` as a whole word (an identifier, a string key, a path segment).
pub(crate) fn mentions_raw(source: &[u8]) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    source.windows(3).enumerate().any(|(i, w)| {
        w == b"raw"
            && (i == 0 || !word(source[i - 1]))
            && source.get(i + 3).is_none_or(|b| !word(*b))
    })
}

impl Bundle {
    /// Parse and compile `scan` according to `config`.
    pub(crate) fn compile(scan: Scan, config: &PolicyConfig) -> Result<Bundle, PolicyError> {
        let uses_raw = scan.files.iter().any(|f| {
            f.kind == FileKind::Rego && !f.rel.ends_with("_test.rego") && mentions_raw(&f.bytes)
        });
        let dir = config.location();
        let invalid = |problems: Vec<String>| PolicyError::Invalid {
            dir: dir.clone(),
            problems,
        };
        if !scan.files.iter().any(|f| f.kind == FileKind::Rego) {
            return Err(PolicyError::NoPolicies { dir: dir.clone() });
        }
        // Only reviewed policies run: the signature is checked before anything is parsed.
        if let Some(key) = &config.verify_key {
            let public = super::signature::read_public_key(key)?;
            super::signature::verify(&scan.files, scan.signature.as_deref(), &public)?;
        }
        let timer = config.timer();
        let (mut engine, packages) = build_engine(&scan.files, Some(timer)).map_err(&invalid)?;
        // Without the entrypoint every alert would silently get no decisions: refuse the bundle.
        let declares_entrypoint = packages.iter().any(|(rel, package)| {
            package == "data.deprovd"
                && engine
                    .has_declared_rule_rooted_at(rel, "decisions")
                    .unwrap_or(false)
        });
        if !declares_entrypoint {
            return Err(invalid(vec![format!(
                "no module defines `{ENTRYPOINT}`: add `decisions contains d if {{ ... }}` to a module with `package deprovd`"
            )]));
        }
        let entry: regorus::Rc<str> = ENTRYPOINT.into();
        let compiled = engine.compile_with_entrypoint(&entry).map_err(|e| {
            invalid(vec![tidy_rego_error(
                &format!("compiling `{ENTRYPOINT}`"),
                &e.to_string(),
            )])
        })?;

        let executable = match config.engine {
            // The bytecode compiler still checks the bundle: an unknown function or undefined
            // variable is an error whatever evaluates it (the interpreter would only meet it per alert).
            Backend::Interpreter => match compile_vm(&compiled, &engine) {
                Err(VmFailure::Invalid(problem)) => return Err(invalid(vec![problem])),
                _ => Executable::Interpreter {
                    engine: Box::new(engine),
                },
            },
            Backend::Auto | Backend::Vm => match compile_vm(&compiled, &engine) {
                Ok((program, data)) => Executable::Vm { program, data },
                Err(VmFailure::Invalid(problem)) => return Err(invalid(vec![problem])),
                Err(VmFailure::Unsupported(e)) if config.engine == Backend::Vm => {
                    return Err(invalid(vec![format!(
                        "the bytecode VM cannot compile this bundle: {e} (set policy.engine = \"auto\" to fall back to the interpreter)"
                    )]));
                }
                Err(VmFailure::Unsupported(e)) => {
                    tracing::warn!(
                        dir = %config.location(),
                        error = %e,
                        "regorus VM cannot compile the policy bundle; falling back to the slower interpreter"
                    );
                    Executable::Interpreter {
                        engine: Box::new(engine),
                    }
                }
            },
        };
        Ok(Bundle {
            uses_raw,
            loaded_at: chrono::Utc::now(),
            id: NEXT_BUNDLE_ID.fetch_add(1, Ordering::Relaxed),
            digest: scan.digest.into(),
            executable,
            timer,
            max_instructions: config.max_instructions,
        })
    }

    pub(crate) fn backend(&self) -> Backend {
        match self.executable {
            Executable::Vm { .. } => Backend::Vm,
            Executable::Interpreter { .. } => Backend::Interpreter,
        }
    }
}

#[cfg(test)]
mod raw_detection_tests {
    use super::mentions_raw;

    #[test]
    fn raw_is_found_in_every_form_a_policy_can_read_it() {
        assert!(mentions_raw(b"x := input.raw.detail"));
        assert!(mentions_raw(b"x := input[\"raw\"]"));
        assert!(mentions_raw(b"raw"));
        assert!(!mentions_raw(b"x := input.alert.drawing"));
        assert!(!mentions_raw(b"raws := 1\nraw_score := 2"));
    }
}
