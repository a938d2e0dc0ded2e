//! How Asterisk finds and drives the module: the `ast_module_info` the loader reads (license key
//! and build-options sum taken from the headers at build time), its registration from
//! `.init_array`/`.fini_array` (what `AST_MODULE_INFO` does in C), and load/unload/reload.

use crate::asterisk::{self, Level};
use crate::config::ModuleConfig;
use crate::guard::guard;
use crate::{app, cli, ffi, legs, manager, media, residency, secret};
use std::ffi::c_char;
use std::ptr::{addr_of, addr_of_mut, null, null_mut};
use std::sync::atomic::{AtomicBool, Ordering};
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
        // After a forced unload the library stayed mapped (see residency.rs) with its ticker and
        // registrations alive; a new load starts them afresh.
        if residency::pinned() {
            unregister_all();
            media::stop_ticker();
        }
        media::CLOSING.store(false, Ordering::SeqCst);
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

/// Whether the application, CLI command and AMI actions are registered.
static REGISTERED: AtomicBool = AtomicBool::new(false);

fn register_all() -> Result<(), &'static str> {
    REGISTERED.store(true, Ordering::SeqCst);
    app::register().map_err(|_| "the Handoff application")?;
    cli::register().map_err(|_| "the CLI commands")?;
    manager::register().map_err(|_| "the AMI actions")?;
    secret::register().map_err(|_| "the AMI action HandoffSecret")?;
    Ok(())
}

fn unregister_all() {
    REGISTERED.store(false, Ordering::SeqCst);
    secret::unregister();
    manager::unregister();
    cli::unregister();
    app::unregister();
}

/// Called by the ticker about once a second. After a forced unload (the library pinned itself,
/// and the loader no longer counts it as running) nothing of the module should stay reachable
/// by name: Asterisk closes the AMI session of anyone who sends an action of a module that is
/// not running, which would cut handoffd off in a loop. So the application, CLI command and AMI
/// actions go; the frame hooks and the ticker stay until the calls end (or a new load).
pub fn after_forced_unload() {
    if !residency::pinned() || !REGISTERED.load(Ordering::SeqCst) || asterisk::module_running(module_self()) {
        return;
    }
    unregister_all();
    legs::registry().forget_controller();
    asterisk::log(
        Level::Warning,
        "res_handoff was unloaded by force: Handoff(), its CLI and AMI actions are gone; live calls keep their frame hooks until they end; 'module load res_handoff.so' brings it back",
    );
}

extern "C" fn unload_module() -> i32 {
    guard("unload", -1, || {
        // From here on no hook is attached and no leg enters Handoff() (both check CLOSING), so
        // the counts read below cannot grow behind the check.
        media::CLOSING.store(true, Ordering::SeqCst);
        let waiting = legs::registry().waiting();
        let hooks = media::HOOKS_ATTACHED.load(Ordering::SeqCst);
        if waiting > 0 || hooks > 0 {
            media::CLOSING.store(false, Ordering::SeqCst);
            // `module unload -h` goes on whatever we answer and dlcloses the library: with hooks
            // on live channels, the ticker and our registrations pointing into it, Asterisk
            // would jump into unmapped code. Pinned, the library stays and the calls go on.
            let pinned = match residency::pin() {
                Ok(_) => {
                    "the module stays in memory even if the unload is forced (-h), so live calls keep their failover"
                }
                Err(why) => {
                    asterisk::log(Level::Error, &format!("cannot pin res_handoff.so in memory: {why}"));
                    "DO NOT force the unload (-h): the module could not pin itself in memory"
                }
            };
            let what = if waiting > 0 {
                format!("{waiting} channel(s) are inside Handoff()")
            } else {
                format!("{hooks} channel(s) are watched by handoff frame hooks")
            };
            asterisk::log(
                Level::Warning,
                &format!("{what}; refusing to unload until those calls end (hang them up or wait); {pinned}"),
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
                "res_handoff reloaded: assign_timeout={} ms, controller_timeout={} s, stall_threshold={} ms, stall_threshold_max={} ms, recover_time={} ms, controller_account={}",
                cfg.assign_timeout_ms, cfg.controller_timeout_s, cfg.stall_threshold_ms, cfg.stall_threshold_max_ms, cfg.recover_time_ms, cfg.controller_account
            ),
        );
        0
    })
}
