//! Who may drive the module over AMI: only the controller's AMI account (`controller_account` in
//! `handoff.conf`, default `handoffd`), and only with clean header values. Pure Rust; the
//! Asterisk side (the per-session mark, manager.conf) is in `manager.rs` and `asterisk.rs`.
//!
//! Asterisk 22 gives an action handler no public way to learn which account its manager session
//! logged in as (`struct mansession` is private to manager.c; manager.h has no getter). So the
//! session proves it: `HandoffChallenge` hands it a fresh random nonce, and `HandoffHello` must
//! carry `Key: hex(SHA-256(nonce + secret))`, where `secret` is the controller account's own
//! secret from manager.conf, the same proof AMI's MD5 login uses. A session that proved it is
//! marked (a datastore on the manager session, gone with the session); every other handoff
//! action from an unmarked session is refused by [`refusal`].

use sha2::{Digest, Sha256};

/// The key a session must send for `nonce` when the account's secret is `secret`.
pub fn expected_key(nonce: &str, secret: &str) -> String {
    let digest = Sha256::new().chain_update(nonce.as_bytes()).chain_update(secret.as_bytes()).finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two keys in time independent of where they differ.
pub fn keys_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hex of 16 random bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Longest header value the module accepts (names, ids and reasons are far shorter).
pub const MAX_VALUE: usize = 256;

/// Checks one header value of `action`: no control characters (they would be echoed into
/// responses, events and the CLI) and at most [`MAX_VALUE`] bytes. The error names the action
/// and header, never the value.
pub fn check_value(action: &str, header: &str, value: &str) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{action}: header {header} contains a control character (U+{:04X}); refused",
            u32::from(c)
        ));
    }
    if value.len() > MAX_VALUE {
        return Err(format!("{action}: header {header} is longer than {MAX_VALUE} bytes; refused"));
    }
    Ok(())
}

/// The error for a handoff action from a session that has not proved it is the controller.
pub fn refusal(action: &str, account: &str) -> String {
    format!(
        "{action}: refused: only the controller's AMI account '{account}' (controller_account in handoff.conf) may send handoff actions, after HandoffChallenge and HandoffHello with its Key"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_sha256_of_nonce_then_secret() {
        // echo -n 0123abcds3cret | sha256sum (the controller's unit test uses the same pair)
        assert_eq!(
            expected_key("0123abcd", "s3cret"),
            "970dc2de00c11167676a9e363e9835ed89c9c8ed2829f059f2c684b251d71369"
        );
        assert!(keys_match(&expected_key("n", "s"), &expected_key("n", "s")));
        assert!(!keys_match(&expected_key("n", "s"), &expected_key("n", "t")));
        assert!(!keys_match("ab", "abc"));
    }

    #[test]
    fn control_bytes_and_oversized_values_are_refused_without_echoing_them() {
        assert!(check_value("HandoffHello", "Controller", "handoffd/0.1.0").is_ok());
        let e = check_value("HandoffHello", "Controller", "z\u{1b}[2J").unwrap_err();
        assert_eq!(e, "HandoffHello: header Controller contains a control character (U+001B); refused");
        let e = check_value("HandoffRefuse", "Reason", "a\rb").unwrap_err();
        assert!(e.contains("U+000D") && !e.contains('\r'));
        assert!(check_value("HandoffAssign", "Session", &"x".repeat(300)).unwrap_err().contains("longer than 256"));
        assert!(check_value("HandoffRefuse", "Reason", "ünïcode is fine").is_ok());
    }
}
