//! Layer 1: raw declarations of the Asterisk C API that res_handoff uses.
//!
//! Nothing here is safe to call without reading the Asterisk header it mirrors. Every struct is
//! `#[repr(C)]` and its size and field offsets are asserted at compile time against the headers
//! the build found (see `build.rs`, which also checks each function prototype with the C
//! compiler). All symbols stay undefined in the .so and resolve against the asterisk binary when
//! the loader dlopens it; libasterisk is never linked.
#![allow(non_camel_case_types, dead_code)]

use std::ffi::{c_char, c_int, c_uint, c_void};

include!(concat!(env!("OUT_DIR"), "/asterisk_abi.rs"));

/// Opaque Asterisk objects: only ever handled by pointer.
#[repr(C)]
pub struct ast_module {
    _private: [u8; 0],
}
#[repr(C)]
pub struct ast_channel {
    _private: [u8; 0],
}
#[repr(C)]
pub struct mansession {
    _private: [u8; 0],
}
#[repr(C)]
pub struct message {
    _private: [u8; 0],
}
#[repr(C)]
pub struct ast_config {
    _private: [u8; 0],
}
#[repr(C)]
pub struct ast_comment {
    _private: [u8; 0],
}

/// module.h: what a module gives the loader. The loader writes `self_`.
#[repr(C)]
pub struct ast_module_info {
    pub self_: *mut ast_module,
    pub load: Option<extern "C" fn() -> c_int>,
    pub reload: Option<extern "C" fn() -> c_int>,
    pub unload: Option<extern "C" fn() -> c_int>,
    pub name: *const c_char,
    pub description: *const c_char,
    pub key: *const c_char,
    pub flags: c_uint,
    pub buildopt_sum: [c_char; 33],
    pub load_pri: u8,
    pub requires: *const c_char,
    pub optional_modules: *const c_char,
    pub enhances: *const c_char,
    pub reserved1: *mut c_void,
    pub reserved2: *mut c_void,
    pub reserved3: *mut c_void,
    pub reserved4: *mut c_void,
    pub support_level: c_int,
}

pub type CliHandler = extern "C" fn(*mut ast_cli_entry, c_int, *mut ast_cli_args) -> *mut c_char;

/// linkedlists.h: `AST_LIST_ENTRY(ast_cli_entry)`.
#[repr(C)]
pub struct ast_cli_list_entry {
    pub next: *mut ast_cli_entry,
}

/// cli.h: one CLI command (new style: `cmda[0]` NULL, `command` and `usage` set on CLI_INIT).
#[repr(C)]
pub struct ast_cli_entry {
    pub cmda: [*const c_char; AST_MAX_CMD_LEN as usize],
    pub summary: *const c_char,
    pub usage: *const c_char,
    pub inuse: c_int,
    pub module: *mut ast_module,
    pub _full_cmd: *mut c_char,
    pub cmdlen: c_int,
    pub args: c_int,
    pub command: *mut c_char,
    pub handler: Option<CliHandler>,
    pub list: ast_cli_list_entry,
}

/// cli.h: the arguments of a CLI invocation.
#[repr(C)]
pub struct ast_cli_args {
    pub fd: c_int,
    pub argc: c_int,
    pub argv: *const *const c_char,
    pub line: *const c_char,
    pub word: *const c_char,
    pub pos: c_int,
    pub n: c_int,
}

/// config.h: one `name = value` of a loaded config file (a linked list).
#[repr(C)]
pub struct ast_variable {
    pub name: *const c_char,
    pub value: *const c_char,
    pub next: *mut ast_variable,
    pub file: *const c_char,
    pub lineno: c_int,
    pub object: c_int,
    pub blanklines: c_int,
    pub inherited: c_int,
    pub precomments: *mut ast_comment,
    pub sameline: *mut ast_comment,
    pub trailing: *mut ast_comment,
    pub stuff: [c_char; 0],
}

/// config.h: `struct ast_flags`, passed by value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ast_flags {
    pub flags: c_uint,
}

/// config.h: `CONFIG_STATUS_FILEINVALID`, a sentinel pointer value.
pub const CONFIG_STATUS_FILEINVALID: *mut ast_config = -2isize as *mut ast_config;
/// config.h: `CONFIG_STATUS_FILEUNCHANGED`, a sentinel pointer value.
pub const CONFIG_STATUS_FILEUNCHANGED: *mut ast_config = -1isize as *mut ast_config;

#[repr(C)]
pub struct ast_frame {
    _private: [u8; 0],
}
#[repr(C)]
pub struct ast_format {
    _private: [u8; 0],
}
#[repr(C)]
pub struct ast_trans_pvt {
    _private: [u8; 0],
}

pub type FramehookEvent = extern "C" fn(*mut ast_channel, *mut ast_frame, c_int, *mut c_void) -> *mut ast_frame;
pub type FramehookDestroy = extern "C" fn(*mut c_void);
pub type FramehookConsume = extern "C" fn(*mut c_void, c_int) -> c_int;
pub type FramehookFixup = extern "C" fn(*mut c_void, c_int, *mut ast_channel, *mut ast_channel);

/// framehook.h: what a frame hook gives `ast_framehook_attach` (copied by Asterisk).
#[repr(C)]
pub struct ast_framehook_interface {
    pub version: u16,
    pub event_cb: Option<FramehookEvent>,
    pub destroy_cb: Option<FramehookDestroy>,
    pub consume_cb: Option<FramehookConsume>,
    pub chan_fixup_cb: Option<FramehookFixup>,
    pub chan_breakdown_cb: Option<FramehookFixup>,
    pub disable_inheritance: c_int,
    pub data: *mut c_void,
}

/// datastore.h: what kind of data a datastore holds and how to destroy it.
#[repr(C)]
pub struct ast_datastore_info {
    pub type_: *const c_char,
    pub duplicate: Option<extern "C" fn(*mut c_void) -> *mut c_void>,
    pub destroy: Option<unsafe extern "C" fn(*mut c_void)>,
    pub chan_fixup: Option<extern "C" fn(*mut c_void, *mut ast_channel, *mut ast_channel)>,
    pub chan_breakdown: Option<extern "C" fn(*mut c_void, *mut ast_channel, *mut ast_channel)>,
}

/// datastore.h: one datastore (here: on a manager session).
#[repr(C)]
pub struct ast_datastore {
    pub uid: *const c_char,
    pub data: *mut c_void,
    pub info: *const ast_datastore_info,
    pub mod_: *mut ast_module,
    pub inheritance: c_uint,
    pub entry: *mut ast_datastore,
}

pub type AppExec = extern "C" fn(*mut ast_channel, *const c_char) -> c_int;
pub type ManagerAction = extern "C" fn(*mut mansession, *const message) -> c_int;

extern "C" {
    pub fn ast_module_register(info: *const ast_module_info);
    pub fn ast_module_unregister(info: *const ast_module_info);
    pub fn __ast_module_running_ref(
        module: *mut ast_module,
        file: *const c_char,
        line: c_int,
        func: *const c_char,
    ) -> *mut ast_module;
    pub fn __ast_module_unref(module: *mut ast_module, file: *const c_char, line: c_int, func: *const c_char);

    pub fn ast_log(level: c_int, file: *const c_char, line: c_int, function: *const c_char, fmt: *const c_char, ...);

    pub fn ast_register_application2(
        app: *const c_char,
        execute: AppExec,
        synopsis: *const c_char,
        description: *const c_char,
        module: *mut c_void,
    ) -> c_int;
    pub fn ast_unregister_application(app: *const c_char) -> c_int;

    pub fn __ast_cli_register(e: *mut ast_cli_entry, module: *mut ast_module) -> c_int;
    pub fn ast_cli_unregister(e: *mut ast_cli_entry) -> c_int;
    pub fn ast_cli(fd: c_int, fmt: *const c_char, ...);

    pub fn ast_manager_register2(
        action: *const c_char,
        authority: c_int,
        func: ManagerAction,
        module: *mut ast_module,
        synopsis: *const c_char,
        description: *const c_char,
    ) -> c_int;
    pub fn ast_manager_unregister(action: *const c_char) -> c_int;
    pub fn __ast_manager_event_multichan(
        category: c_int,
        event: *const c_char,
        chancount: c_int,
        chans: *mut *mut ast_channel,
        file: *const c_char,
        line: c_int,
        func: *const c_char,
        fmt: *const c_char,
        ...
    ) -> c_int;
    pub fn astman_get_header(m: *const message, var: *mut c_char) -> *const c_char;
    pub fn astman_send_ack(s: *mut mansession, m: *const message, msg: *mut c_char);
    pub fn astman_send_error(s: *mut mansession, m: *const message, error: *mut c_char);
    pub fn astman_append(s: *mut mansession, fmt: *const c_char, ...);
    pub fn astman_datastore_add(s: *mut mansession, datastore: *mut ast_datastore) -> c_int;
    pub fn astman_datastore_find(
        s: *mut mansession,
        info: *const ast_datastore_info,
        uid: *const c_char,
    ) -> *mut ast_datastore;
    pub fn __ast_datastore_alloc(
        info: *const ast_datastore_info,
        uid: *const c_char,
        module: *mut ast_module,
        file: *const c_char,
        line: c_int,
        function: *const c_char,
    ) -> *mut ast_datastore;
    pub fn ast_datastore_free(datastore: *mut ast_datastore) -> c_int;

    pub fn ast_channel_name(chan: *const ast_channel) -> *const c_char;
    pub fn ast_channel_uniqueid(chan: *const ast_channel) -> *const c_char;
    pub fn ast_safe_sleep(chan: *mut ast_channel, ms: c_int) -> c_int;
    pub fn ast_check_hangup(chan: *mut ast_channel) -> c_int;
    pub fn pbx_builtin_setvar_helper(chan: *mut ast_channel, name: *const c_char, value: *const c_char) -> c_int;
    pub fn ast_func_read(chan: *mut ast_channel, function: *const c_char, workspace: *mut c_char, len: usize) -> c_int;
    /// app.h: plays `prompt` (may be "") and reads up to `maxlen` digits into `s` (which holds
    /// `maxlen + 1` bytes), ended by `#` or `timeout` ms without a digit. Returns an
    /// `enum ast_getdata_result`: -1 hung up, 0 complete, 1 timeout, 3 `#` alone.
    pub fn ast_app_getdata(
        chan: *mut ast_channel,
        prompt: *const c_char,
        s: *mut c_char,
        maxlen: c_int,
        timeout: c_int,
    ) -> c_int;

    pub fn ast_config_load2(filename: *const c_char, who_asked: *const c_char, flags: ast_flags) -> *mut ast_config;
    pub fn ast_variable_browse(config: *const ast_config, category: *const c_char) -> *mut ast_variable;
    pub fn ast_config_destroy(config: *mut ast_config);

    pub fn ast_framehook_attach(chan: *mut ast_channel, i: *mut ast_framehook_interface) -> c_int;
    pub fn ast_frame_free(frame: *mut ast_frame, cache: c_int);
    /// channel.h: the channel's read translation path (native format to its read format), or
    /// null when none is needed; valid while the channel is locked.
    pub fn ast_channel_readtrans(chan: *const ast_channel) -> *mut ast_trans_pvt;
    /// translate.h: runs `frame` through the path; `consume` 0 leaves `frame` to the caller.
    pub fn ast_translate(path: *mut ast_trans_pvt, frame: *mut ast_frame, consume: c_int) -> *mut ast_frame;
    /// format.h: the format's name (`ulaw`, `slin16`, ...), owned by the format.
    pub fn ast_format_get_name(format: *const ast_format) -> *const c_char;
    pub static mut ast_null_frame: ast_frame;
    /// format_cache.h: the cached signed-linear 8 kHz format, set at startup and never freed.
    pub static ast_format_slin: *mut ast_format;
    pub fn __ao2_lock(
        a: *mut c_void,
        how: c_int,
        file: *const c_char,
        func: *const c_char,
        line: c_int,
        var: *const c_char,
    ) -> c_int;
    pub fn __ao2_unlock(
        a: *mut c_void,
        file: *const c_char,
        func: *const c_char,
        line: c_int,
        var: *const c_char,
    ) -> c_int;
    /// astobj2.h: adds `delta` to the object's reference count (`ao2_ref`); the old count.
    pub fn __ao2_ref(
        o: *mut c_void,
        delta: c_int,
        tag: *const c_char,
        file: *const c_char,
        line: c_int,
        func: *const c_char,
    ) -> c_int;
    /// channel.h: queues a copy of `f` on the channel's read queue (locks the channel itself).
    pub fn ast_queue_frame(chan: *mut ast_channel, f: *mut ast_frame) -> c_int;
}
