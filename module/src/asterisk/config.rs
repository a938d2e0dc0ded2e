//! Reading a section of a config file through Asterisk's config loader (includes, templates and
//! its error messages come with it).

use super::ffi;
use super::{cstring, from_c};
use std::ffi::c_int;

/// What reading an Asterisk config file gave.
pub enum ConfigFile {
    /// The `(name, value, line)` variables of the requested section.
    Section(Vec<(String, String, c_int)>),
    /// The file does not exist.
    Missing,
    /// The file exists but Asterisk could not parse it.
    Invalid,
}

/// Reads section `category` of config file `file`.
pub fn read_config_section(file: &str, category: &str) -> ConfigFile {
    let (f, who, cat) = (cstring(file), cstring("res_handoff"), cstring(category));
    // SAFETY: valid C strings; flags 0 asks for a fresh load.
    let cfg = unsafe { ffi::ast_config_load2(f.as_ptr(), who.as_ptr(), ffi::ast_flags { flags: 0 }) };
    if cfg.is_null() {
        return ConfigFile::Missing;
    }
    if cfg == ffi::CONFIG_STATUS_FILEINVALID || cfg == ffi::CONFIG_STATUS_FILEUNCHANGED {
        return ConfigFile::Invalid;
    }
    let mut vars = Vec::new();
    // SAFETY: cfg is a real config; the variable list belongs to it and stays valid until
    // ast_config_destroy below; each node's strings are NUL-terminated.
    unsafe {
        let mut v = ffi::ast_variable_browse(cfg, cat.as_ptr());
        while !v.is_null() {
            vars.push((from_c((*v).name), from_c((*v).value), (*v).lineno));
            v = (*v).next;
        }
        ffi::ast_config_destroy(cfg);
    }
    ConfigFile::Section(vars)
}
