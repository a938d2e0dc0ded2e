//! Loads res_handoff.so with libloading in this test process, standing in for Asterisk's loader,
//! and inspects the `ast_module_info` it registers from `.init_array`: the license key must be
//! byte-for-byte the `ASTERISK_GPL_KEY` of the headers it was built against (with its final
//! newline), the build-options sum that of `buildopts.h`, and the entry points present. The
//! headers are parsed here independently of the module's build script.

use std::ffi::{c_char, c_void, CStr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

static REGISTERED: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static UNREGISTERED: AtomicUsize = AtomicUsize::new(0);

/// Stands in for Asterisk's `ast_module_register`.
#[no_mangle]
pub extern "C" fn ast_module_register(info: *mut c_void) {
    REGISTERED.store(info, Ordering::SeqCst);
}

/// Stands in for Asterisk's `ast_module_unregister`.
#[no_mangle]
pub extern "C" fn ast_module_unregister(_info: *mut c_void) {
    UNREGISTERED.fetch_add(1, Ordering::SeqCst);
}

/// The data symbols the module binds at load time.
#[no_mangle]
pub static mut ast_null_frame: [u64; 32] = [0; 32];
#[no_mangle]
pub static mut ast_format_slin: *mut c_void = std::ptr::null_mut();

/// Rust links cdylibs with immediate binding (full RELRO): every Asterisk function the module
/// calls must exist at dlopen, so this process exports stand-ins. None is ever called: only the
/// registration runs while the module is merely loaded (Asterisk would then call load()).
macro_rules! never_called {
    ($($name:ident)*) => {$(
        #[no_mangle]
        pub extern "C" fn $name() {
            std::process::abort();
        }
    )*};
}
never_called!(
    __ao2_lock __ao2_unlock __ast_cli_register __ast_manager_event_multichan ast_channel_name
    ast_channel_uniqueid ast_cli ast_cli_unregister ast_config_destroy ast_config_load2 ast_frame_free
    ast_framehook_attach ast_func_read ast_log ast_manager_register2 ast_manager_unregister
    ast_register_application2 ast_safe_sleep ast_unregister_application ast_variable_browse
    astman_get_header astman_send_ack astman_send_error pbx_builtin_setvar_helper
    __ast_datastore_alloc __ast_module_running_ref __ast_module_unref ast_app_getdata astman_append
    astman_datastore_add astman_datastore_find ast_format_get_name ast_channel_readtrans ast_translate
    __ao2_ref ast_queue_frame
);

/// The start of module.h's `struct ast_module_info` (layout checked by the module's build).
#[repr(C)]
struct InfoPrefix {
    self_: *mut c_void,
    load: Option<extern "C" fn() -> i32>,
    reload: Option<extern "C" fn() -> i32>,
    unload: Option<extern "C" fn() -> i32>,
    name: *const c_char,
    description: *const c_char,
    key: *const c_char,
    flags: u32,
    buildopt_sum: [c_char; 33],
}

fn include_dir() -> PathBuf {
    PathBuf::from(std::env::var("ASTERISK_INCLUDE_DIR").unwrap_or_else(|_| "/usr/include".into()))
}

/// `ASTERISK_GPL_KEY` as the C preprocessor builds it: splice backslash-newlines, then read
/// the string literal, unescaping `\"` and `\n`.
fn key_from_header() -> String {
    let text = std::fs::read_to_string(include_dir().join("asterisk/module.h")).expect("read module.h");
    let spliced = text.replace("\\\n", "");
    let start = spliced.find("#define ASTERISK_GPL_KEY").expect("ASTERISK_GPL_KEY in module.h");
    let literal = &spliced[start..];
    let open = literal.find('"').expect("the key's string literal");
    let mut key = String::new();
    let mut chars = literal[open + 1..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return key,
            '\\' => match chars.next() {
                Some('n') => key.push('\n'),
                Some(other) => key.push(other),
                None => break,
            },
            c => key.push(c),
        }
    }
    panic!("unterminated ASTERISK_GPL_KEY literal in module.h")
}

fn buildopt_sum_from_header() -> String {
    let text = std::fs::read_to_string(include_dir().join("asterisk/buildopts.h")).expect("read buildopts.h");
    let line = text.lines().find(|l| l.starts_with("#define AST_BUILDOPT_SUM")).expect("AST_BUILDOPT_SUM");
    line.split('"').nth(1).unwrap_or_default().to_string()
}

#[test]
fn the_module_registers_the_headers_key_and_buildopts_sum() {
    let so = handoff_tests::target_dir().join("release/libres_handoff.so");
    // SAFETY: loading our own module; its constructor calls the ast_module_register above, and
    // every other Asterisk symbol it binds is a stand-in above that is never called.
    let lib = unsafe { libloading::os::unix::Library::open(Some(&so), libc_flags()) }
        .unwrap_or_else(|e| panic!("dlopen {}: {e}", so.display()));
    let info = REGISTERED.load(Ordering::SeqCst) as *const InfoPrefix;
    assert!(!info.is_null(), "the module did not register itself from .init_array");
    // SAFETY: the module registered a pointer to its static ast_module_info.
    let info = unsafe { &*info };
    let cstr = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    let key = cstr(info.key);
    let expected = key_from_header();
    assert!(expected.ends_with('\n'), "module.h's key ends in a newline");
    assert_eq!(key, expected, "license key differs from module.h");
    let sum = cstr(info.buildopt_sum.as_ptr());
    assert_eq!(sum, buildopt_sum_from_header());
    assert_eq!(sum.len(), 32);
    assert_eq!(cstr(info.name), "res_handoff");
    assert!(cstr(info.description).contains("handoff"));
    assert!(info.load.is_some() && info.unload.is_some() && info.reload.is_some());
    assert!(info.self_.is_null(), "only Asterisk's loader sets self");
    // Unloading runs .fini_array: the module unregisters what it registered.
    drop(lib);
    assert_eq!(UNREGISTERED.load(Ordering::SeqCst), 1, "the module unregisters itself when unloaded");
}

fn libc_flags() -> i32 {
    // RTLD_LAZY | RTLD_LOCAL
    0x0001
}
