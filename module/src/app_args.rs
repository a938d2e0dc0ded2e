//! The arguments of `Handoff(far[,path[,token]])`, parsed without touching Asterisk.

/// The parsed arguments of one `Handoff()` call.
#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    pub far: String,
    pub path: &'static str,
    pub token: String,
}

/// Parses `far[,path[,token]]`; the error names the argument and what is wrong with it.
pub fn parse_args(data: &str) -> Result<Args, String> {
    let mut parts = data.split(',').map(str::trim);
    let far = parts.next().unwrap_or("").to_string();
    if far.is_empty() {
        return Err("the far number (first argument) is empty".into());
    }
    if far.len() > 64 || !far.chars().all(|c| c.is_ascii_alphanumeric() || "+*#._-".contains(c)) {
        return Err(format!("far number '{far}' must be 1-64 characters of 0-9 A-Z a-z + * # . _ -"));
    }
    let path = match parts.next().unwrap_or("") {
        "" | "data" => "data",
        "carrier" => "carrier",
        other => return Err(format!("path '{other}' must be data or carrier")),
    };
    let token = parts.next().unwrap_or("").to_string();
    if token.len() > 64 || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err("token must be up to 64 characters of 0-9 A-Z a-z -".into());
    }
    if parts.next().is_some() {
        return Err("too many arguments (expected far[,path[,token]])".into());
    }
    Ok(Args { far, path, token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_path_and_token() {
        assert_eq!(parse_args("2000").unwrap(), Args { far: "2000".into(), path: "data", token: String::new() });
        assert_eq!(
            parse_args(" +4930123 , carrier , ab-12 ").unwrap(),
            Args { far: "+4930123".into(), path: "carrier", token: "ab-12".into() }
        );
    }

    #[test]
    fn bad_arguments_say_which_and_why() {
        assert_eq!(parse_args("").unwrap_err(), "the far number (first argument) is empty");
        assert!(parse_args("20;00").unwrap_err().starts_with("far number '20;00' must be"));
        assert_eq!(parse_args("2000,wifi").unwrap_err(), "path 'wifi' must be data or carrier");
        assert!(parse_args("2000,data,a b").unwrap_err().starts_with("token must be"));
        assert!(parse_args("2000,data,t,x").unwrap_err().starts_with("too many arguments"));
    }
}
