//! The admin API's token (`api.admin_token_file`): read at start, or made (32 random bytes,
//! hex, mode 0600) when the file is missing; handoffctl reads the same file.

use tracing::{error, info};

/// Reads the admin token, making one (32 random bytes, hex, mode 0600) if the file is missing.
/// `None` (admin endpoints refuse everything) if it can be neither read nor made.
pub fn load_admin_token(path: &str) -> Option<zeroize::Zeroizing<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Some(zeroize::Zeroizing::new(t.trim().to_string())),
        Ok(_) => {
            error!("admin token {path} is empty; admin API off (delete it to have handoffd make one)");
            return None;
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            error!("admin token {path}: {e}; admin API off");
            return None;
        }
        Err(_) => {}
    }
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    if let Err(e) = getrandom::fill(&mut raw[..]) {
        error!("admin token: OS random source: {e}; admin API off");
        return None;
    }
    let token = zeroize::Zeroizing::new(crate::store::records::hex(&raw[..]));
    let written = (|| -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        f.write_all(token.as_bytes())?;
        f.sync_all()
    })();
    match written {
        Ok(()) => {
            info!("created the admin token {path} (handoffctl reads it)");
            Some(token)
        }
        Err(e) => {
            error!("admin token {path}: cannot create: {e}; admin API off");
            None
        }
    }
}
