pub fn validate_deep(_s: &crate::config::Settings) -> Result<(), crate::config::Problems> { Ok(()) }
pub fn policy_test(_d: &std::path::Path) -> std::process::ExitCode { todo!() }
pub fn simulate(_s: &crate::config::Settings, _a: &std::path::Path, _f: Option<&str>, _p: Option<&std::path::Path>) -> std::process::ExitCode { todo!() }
pub async fn connectors_check(_s: &crate::config::Settings) -> std::process::ExitCode { todo!() }
