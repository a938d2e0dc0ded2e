//! How Asterisk finds and drives the module: the `ast_module_info` the loader reads (license key
//! and build-options sum taken from the headers at build time), its registration from
//! `.init_array`/`.fini_array` (what `AST_MODULE_INFO` does in C), and load/unload/reload.

use crate::asterisk::{self, Level};
use crate::config::ModuleConfig;
use crate::guard::guard;
use crate::{app, cli, ffi, legs, manager, media, secret};
use std::ffi::c_char;
use std::ptr::{addr_of, addr_of_mut, null, null_mut};
use std::sync::{LazyLock, RwLock};

const NAME: &std::ffi::CStr = c"res_handoff";
const DESCRIPTION: &std::ffi::CStr = c"handoff: calls that survive network loss and move between devices";
/// The config file the module reads from Asterisk's config directory.
pub const CONFIG_FILE: &str = "handoff.conf";

/// The module's settings, replaced on reload.
pub static CONFIG: LazyLock<RwLock<ModuleConfig>> = LazyLock::new(|| RwLock::new(ModuleConfig::default()));

pub fn config() -> ModuleConfig {
    CONFIG.read().unwrap_or_else(|e| e.into_inner()).clone()
}

const fn buildopt_sum() -> [c_char; 33] {
    let src = ffi::AST_BUILDOPT_SUM;
    let mut out = [0 as c_char; 33];
    let mut i = 0;
    while i < src.len() && i < 32 {
        out[i] = src[i] as c_char;
        i += 1;
    }
    out
}

/// Written by the loader (`self_`), hence `static mut`; only the loader and the registration
/// functions below touch it, and only through raw pointers.
static mut MODULE_INFO: ffi::ast_module_info = ffi::ast_module_info {
    self_: null_mut(),
    load: Some(load_module),
    reload: Some(reload_module),
    unload: Some(unload_module),
    name: NAME.as_ptr(),
    description: DESCRIPTION.as_ptr(),
    key: ffi::ASTERISK_GPL_KEY.as_ptr() as *const c_char,
    flags: ffi::AST_MODFLAG_LOAD_ORDER as u32,
    buildopt_sum: buildopt_sum(),
    load_pri: ffi::AST_MODPRI_DEFAULT as u8,
    requires: null(),
    optional_modules: null(),
    enhances: null(),
    reserved1: null_mut(),
    reserved2: null_mut(),
    reserved3: null_mut(),
    reserved4: null_mut(),
    support_level: ffi::AST_MODULE_SUPPORT_EXTENDED,
};

/// `AST_MODULE_SELF`: the loader's handle for this module (NULL before registration).
pub fn module_self() -> *mut ffi::ast_module {
    // SAFETY: a plain read of a pointer field the loader wrote before calling load().
    unsafe { (*addr_of!(MODULE_INFO)).self_ }
}

/// `AST_MODULE_SELF_SYM` for this module, as C modules export it.
#[no_mangle]
pub extern "C" fn __internal_res_handoff_self() -> *mut ffi::ast_module {
    module_self()
}

extern "C" fn register_module() {
    guard("module registration", (), || {
        // SAFETY: runs once from .init_array while the loader dlopens us; the loader keeps the
        // pointer until ast_module_unregister in .fini_array.
        unsafe { ffi::ast_module_register(addr_of_mut!(MODULE_INFO)) }
    })
}

extern "C" fn unregister_module() {
    guard("module unregistration", (), || {
        // SAFETY: the same pointer that was registered.
        unsafe { ffi::ast_module_unregister(addr_of_mut!(MODULE_INFO)) }
    })
}

#[used]
#[link_section = ".init_array"]
static REGISTER: extern "C" fn() = register_module;
#[used]
#[link_section = ".fini_array"]
static UNREGISTER: extern "C" fn() = unregister_module;

/// Reads handoff.conf; a missing file means the defaults, a bad value keeps the previous one.
fn load_config() -> ModuleConfig {
    let mut cfg = config();
    match asterisk::read_config_section(CONFIG_FILE, "general") {
        asterisk::ConfigFile::Missing => {
            asterisk::log(Level::Notice, &format!("{CONFIG_FILE} not found; using defaults (copy handoff.conf.sample to it)"))
        }
        asterisk::ConfigFile::Invalid => asterisk::log(
            Level::Error,
            &format!("{CONFIG_FILE} could not be parsed (see the config loader's message above); keeping the previous settings"),
        ),
        asterisk::ConfigFile::Section(vars) => {
            for e in cfg.apply(CONFIG_FILE, &vars) {
                asterisk::log(Level::Error, &e);
            }
        }
    }
    cfg
}

extern "C" fn load_module() -> i32 {
    guard("load", ffi::AST_MODULE_LOAD_DECLINE, || {
        crate::guard::install_quiet_panic_hook();
        *CONFIG.write().unwrap_or_else(|e| e.into_inner()) = load_config();
        if let Err(why) = media::start_ticker() {
            asterisk::log(Level::Error, &format!("{why}; declining to load"));
            return ffi::AST_MODULE_LOAD_DECLINE;
        }
        if let Err(what) = register_all() {
            asterisk::log(Level::Error, &format!("cannot register {what}; declining to load"));
            unregister_all();
            media::stop_ticker();
            return ffi::AST_MODULE_LOAD_DECLINE;
        }
        asterisk::log(Level::Notice, &format!("res_handoff {} loaded", env!("CARGO_PKG_VERSION")));
        ffi::AST_MODULE_LOAD_SUCCESS
    })
}

fn register_all() -> Result<(), &'static str> {
    app::register().map_err(|_| "the Handoff application")?;
    cli::register().map_err(|_| "the CLI commands")?;
    manager::register().map_err(|_| "the AMI actions")?;
    secret::register().map_err(|_| "the AMI action HandoffSecret")?;
    Ok(())
}

fn unregister_all() {
    secret::unregister();
    manager::unregister();
    cli::unregister();
    app::unregister();
}

extern "C" fn unload_module() -> i32 {
    guard("unload", -1, || {
        let waiting = legs::registry().waiting();
        if waiting > 0 {
            asterisk::log(
                Level::Warning,
                &format!("{waiting} channel(s) are inside Handoff(); refusing to unload until they leave (hang them up or wait)"),
            );
            return -1;
        }
        let hooks = media::HOOKS_ATTACHED.load(std::sync::atomic::Ordering::Acquire);
        if hooks > 0 {
            asterisk::log(
                Level::Warning,
                &format!(
                    "{hooks} channel(s) are watched by handoff frame hooks; refusing to unload until those calls end"
                ),
            );
            return -1;
        }
        unregister_all();
        media::stop_ticker();
        legs::registry().forget_controller();
        crate::guard::remove_panic_hook();
        asterisk::log(Level::Notice, "res_handoff unloaded");
        0
    })
}

extern "C" fn reload_module() -> i32 {
    guard("reload", -1, || {
        let cfg = load_config();
        *CONFIG.write().unwrap_or_else(|e| e.into_inner()) = cfg.clone();
        asterisk::log(
            Level::Notice,
            &format!(
                "res_handoff reloaded: assign_timeout={} ms, controller_timeout={} s, stall_threshold={} ms, recover_time={} ms",
                cfg.assign_timeout_ms, cfg.controller_timeout_s, cfg.stall_threshold_ms, cfg.recover_time_ms
            ),
        );
        0
    })
}
