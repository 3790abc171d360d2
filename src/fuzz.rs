//! The bounded-time fuzz suite (test-only): hostile and mangled input for every parser deprovd runs
//! on data it does not control, with fixed seeds so a failure reproduces exactly.
//!
//! Targets and what each case must hold:
//! - **alert normalizers** — every format of the registry plus auto-detection, fed the golden
//!   fixtures (`tests/golden/*/*.input.json`) mutated byte-wise (flip, insert, delete, splice,
//!   truncate) and structure-wise (a random node replaced by extreme scalars, control characters,
//!   confusables, long strings, deep nesting, big arrays; keys dropped or duplicated in the text):
//!   no panic, and every normalized alert serializes to at most `4 × input + 64 KiB` bytes.
//! - **the template sandbox** — every `{{ … }}` / `{% … %}` template of the shipped connector specs
//!   rendered against random contexts: no panic, output at most `8 × (template + context JSON) +
//!   4 KiB`; the same templates mutated: no panic.
//! - **the connector spec loader** (`Spec::parse`, which compiles every template) on mutated specs,
//!   and **the config loader** (`Settings::from_toml` + `validate`) on a mutated example config: no
//!   panic.
//!
//! A panic is caught (`catch_unwind`) and reported with the seed and the input, so all failures of a
//! run are listed at once. Case counts keep the whole suite near 10–20 s in a debug build.

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::path::{Path, PathBuf};

    use serde_json::Value;

    /// xorshift64*: tiny, deterministic, good enough to pick mutations.
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn chance(&mut self, one_in: usize) -> bool {
            self.below(one_in) == 0
        }
    }

    const NASTY_STRINGS: &[&str] = &[
        "",
        "\u{0}",
        "a\nb\r\nc",
        "\u{1b}[31mred",
        "ｂｒｅａｋｇｌａｓｓ@example.org",
        "breakglaſs@example.org",
        "x{email}y{{subject}}{% raw %}",
        "\u{202e}evil",
        "é\u{301}",
        "😀",
        "9999-99-99T99:99:99Z",
        "1e309",
        "-0",
        "NaN",
        "CORP\\jdoe",
        "../../Groups/x",
        "' OR 1=1 --",
        "*)(uid=*",
    ];

    fn nasty_scalar(rng: &mut Rng) -> Value {
        match rng.below(9) {
            0 => Value::Null,
            1 => Value::Bool(rng.chance(2)),
            2 => Value::from(i64::MIN + rng.below(3) as i64),
            3 => Value::from(u64::MAX - rng.below(3) as u64),
            4 => Value::from(1e308 * if rng.chance(2) { 1.0 } else { -1.0 }),
            5 => Value::from(rng.next() as f64 / 7.0),
            6 => Value::String("A".repeat(rng.below(5_000))),
            7 => Value::String(
                (0..rng.below(64))
                    .map(|_| char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}'))
                    .collect(),
            ),
            _ => Value::String(NASTY_STRINGS[rng.below(NASTY_STRINGS.len())].to_string()),
        }
    }

    /// Replace, wrap, grow or delete one random node of `v`.
    fn mutate_value(v: &mut Value, rng: &mut Rng, depth: usize) {
        let descend = depth < 12 && rng.below(3) != 0;
        match v {
            Value::Object(o) if descend && !o.is_empty() => {
                let i = rng.below(o.len());
                let key = o.keys().nth(i).cloned().expect("index in range");
                if rng.chance(8) {
                    o.remove(&key);
                } else if rng.chance(10) {
                    let val = o.remove(&key).expect("present");
                    o.insert(format!("{key}\u{0}"), val);
                } else {
                    mutate_value(o.get_mut(&key).expect("present"), rng, depth + 1);
                }
                return;
            }
            Value::Array(a) if descend && !a.is_empty() => {
                let i = rng.below(a.len());
                if rng.chance(6) {
                    // Grow: past every per-alert cap.
                    let copy = a[i].clone();
                    let n = rng.below(160);
                    a.extend(std::iter::repeat_n(copy, n));
                } else {
                    mutate_value(&mut a[i], rng, depth + 1);
                }
                return;
            }
            _ => {}
        }
        *v = match rng.below(6) {
            0 => Value::Array(vec![v.take()]),
            1 => Value::Object(Default::default()),
            2 => {
                let mut deep = nasty_scalar(rng);
                for _ in 0..rng.below(120) {
                    deep = Value::Array(vec![deep]);
                }
                deep
            }
            _ => nasty_scalar(rng),
        };
    }

    /// A byte-level mutation of `input`.
    fn mutate_bytes(input: &[u8], rng: &mut Rng) -> Vec<u8> {
        let mut b = input.to_vec();
        for _ in 0..1 + rng.below(4) {
            let len = b.len().max(1);
            match rng.below(6) {
                0 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
                1 => {
                    let i = rng.below(len);
                    let byte = *b"{}[]\",:\\0e-\x00\xff".get(rng.below(16)).unwrap_or(&b'x');
                    b.insert(i.min(b.len()), byte);
                }
                2 if !b.is_empty() => {
                    let i = rng.below(b.len());
                    let n = rng.below(16).min(b.len() - i);
                    b.drain(i..i + n);
                }
                3 if !b.is_empty() => {
                    // Splice: repeat a slice (duplicate keys, doubled objects).
                    let i = rng.below(b.len());
                    let n = rng.below(200).min(b.len() - i);
                    let piece = b[i..i + n].to_vec();
                    let at = rng.below(b.len());
                    b.splice(at..at, piece);
                }
                4 => b.truncate(rng.below(len)),
                _ => {}
            }
        }
        b
    }

    fn repo(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    fn golden_inputs() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for dir in std::fs::read_dir(repo("tests/golden")).unwrap() {
            let dir = dir.unwrap().path();
            if !dir.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.to_string_lossy().ends_with(".input.json") {
                    out.push(std::fs::read(&f).unwrap());
                }
            }
        }
        assert!(out.len() > 20, "golden fixtures found: {}", out.len());
        out
    }

    /// Run `case` under `catch_unwind`; a panic becomes a line naming the seed and the input.
    fn guarded(
        failures: &mut Vec<String>,
        what: &str,
        seed: u64,
        input: &[u8],
        case: impl FnOnce(),
    ) {
        if catch_unwind(AssertUnwindSafe(case)).is_err() {
            let shown = String::from_utf8_lossy(&input[..input.len().min(400)]).into_owned();
            failures.push(format!("{what} seed {seed}: panicked on {shown:?}"));
        }
    }

    #[test]
    fn normalizers_survive_mutated_fixtures_within_the_size_bound() {
        let registry = crate::alert::NormalizerRegistry::new();
        let mut formats: Vec<Option<&str>> = vec![None];
        formats.extend(registry.names().into_iter().map(Some));
        let inputs = golden_inputs();
        let mut failures = Vec::new();
        let mut cases = 0usize;
        let mut alerts = 0usize;
        for seed in 0..4000u64 {
            let mut rng = Rng::new(seed);
            let base = &inputs[rng.below(inputs.len())];
            let input = if rng.chance(2) {
                mutate_bytes(base, &mut rng)
            } else {
                match crate::json::from_slice(base) {
                    Ok(mut v) => {
                        for _ in 0..1 + rng.below(3) {
                            mutate_value(&mut v, &mut rng, 0);
                        }
                        serde_json::to_vec(&v).unwrap()
                    }
                    Err(_) => mutate_bytes(base, &mut rng),
                }
            };
            let bound = 4 * input.len() + 64 * 1024;
            // Auto-detection plus two formats per case (every format gets ~170 cases).
            let picked = [
                None,
                formats[rng.below(formats.len())],
                formats[rng.below(formats.len())],
            ];
            for format in &picked {
                cases += 1;
                guarded(&mut failures, "normalize_all", seed, &input, || {
                    if let Ok(parts) = registry.normalize_all(&input, *format) {
                        assert!(parts.len() <= crate::alert::MAX_EVENTS_PER_DELIVERY);
                        for p in parts {
                            if let Ok(alert) = p.result {
                                alerts += 1;
                                let size = serde_json::to_vec(&alert).unwrap().len();
                                assert!(
                                    size <= bound,
                                    "alert of {size} bytes from {}",
                                    input.len()
                                );
                                assert!(
                                    alert.subjects.len() <= crate::alert::MAX_SUBJECTS_PER_ALERT
                                );
                            }
                        }
                    }
                });
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {cases} cases failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        eprintln!("normalizers: {cases} cases, {alerts} alerts normalized");
        // The mutations must leave enough valid documents for the size bound to be exercised.
        assert!(
            alerts > 500,
            "only {alerts} alerts normalized in {cases} cases"
        );
    }

    /// Every template in the shipped connector specs (`{{ … }}` and `{% … %}` spans, with their
    /// surrounding line so blocks stay balanced where they can).
    fn spec_templates() -> Vec<String> {
        let mut out = Vec::new();
        for f in std::fs::read_dir(repo("connectors")).unwrap() {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            for line in text.lines() {
                if line.contains("{{") || line.contains("{%") {
                    let value = line.split_once(": ").map_or(line, |(_, v)| v);
                    out.push(
                        value
                            .trim()
                            .trim_matches('\'')
                            .trim_matches('"')
                            .to_string(),
                    );
                }
            }
        }
        assert!(out.len() > 30, "templates found: {}", out.len());
        out
    }

    fn random_context(rng: &mut Rng) -> Value {
        let mut ctx = serde_json::json!({
            "subject": "jdoe@corp.example",
            "email": "jdoe@corp.example",
            "username": "jdoe",
            "vars": {"disable_mode": "suspend", "group": "g", "path": "hook"},
            "lookup": {"id": "00u1", "login": "jdoe", "groups": [{"id": "g1"}], "memberships": []},
            "pre_state": {"groups": ["g1", "g2"]},
            "action": {"key": "k", "operation": "disable_account", "reason": "r"},
            "page": {"cursor": "c"},
        });
        for _ in 0..1 + rng.below(4) {
            mutate_value(&mut ctx, rng, 0);
        }
        ctx
    }

    #[test]
    fn templates_render_random_data_without_panics_and_within_the_size_bound() {
        let templates = spec_templates();
        let env = crate::template::new_env();
        let mut failures = Vec::new();
        let mut rendered = 0usize;
        for seed in 0..1500u64 {
            let mut rng = Rng::new(seed);
            let tpl = &templates[rng.below(templates.len())];
            let ctx = random_context(&mut rng);
            let ctx_len = serde_json::to_vec(&ctx).unwrap().len();
            let bound = 8 * (tpl.len() + ctx_len) + 4096;
            guarded(&mut failures, "render", seed, tpl.as_bytes(), || {
                if let Ok(out) = env.render_str(tpl, &ctx) {
                    rendered += 1;
                    assert!(out.len() <= bound, "{} bytes rendered", out.len());
                }
            });
            // The template itself mangled: errors are fine, panics are not.
            let mangled =
                String::from_utf8_lossy(&mutate_bytes(tpl.as_bytes(), &mut rng)).into_owned();
            guarded(
                &mut failures,
                "render mangled",
                seed,
                mangled.as_bytes(),
                || {
                    let _ = env.render_str(&mangled, &ctx);
                },
            );
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        eprintln!("templates: 3000 renders, {rendered} of 1500 unmangled ones succeeded");
        assert!(rendered > 100, "only {rendered} templates rendered");
    }

    #[test]
    fn the_spec_loader_survives_mutated_specs() {
        let mut specs = Vec::new();
        for f in std::fs::read_dir(repo("connectors")).unwrap() {
            let p = f.unwrap().path();
            specs.push((
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
        for (name, text) in &specs {
            assert!(
                crate::connectors::http::Spec::parse(name, text).is_ok(),
                "{name} parses as shipped"
            );
        }
        let mut failures = Vec::new();
        for seed in 0..400u64 {
            let mut rng = Rng::new(seed);
            let (name, text) = &specs[rng.below(specs.len())];
            let mangled =
                String::from_utf8_lossy(&mutate_bytes(text.as_bytes(), &mut rng)).into_owned();
            guarded(
                &mut failures,
                "Spec::parse",
                seed,
                mangled.as_bytes(),
                || {
                    let _ = crate::connectors::http::Spec::parse(name, &mangled);
                },
            );
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn the_config_loader_survives_mutated_and_random_configs() {
        let example = std::fs::read_to_string(repo("deploy/deprovd.example.toml")).unwrap();
        let mut failures = Vec::new();
        for seed in 0..1500u64 {
            let mut rng = Rng::new(seed);
            let text = if rng.chance(10) {
                (0..rng.below(300))
                    .map(|_| char::from_u32(rng.below(0x80) as u32).unwrap_or(' '))
                    .collect()
            } else {
                String::from_utf8_lossy(&mutate_bytes(example.as_bytes(), &mut rng)).into_owned()
            };
            guarded(
                &mut failures,
                "Settings::from_toml",
                seed,
                text.as_bytes(),
                || {
                    if let Ok(s) = crate::app::Settings::from_toml(&text, Vec::new()) {
                        let _ = s.validate();
                    }
                },
            );
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
