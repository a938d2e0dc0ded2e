//! Reads what res_handoff.so must share with Asterisk from the Asterisk headers the build finds,
//! never from pasted copies: the license key the loader MD5-checks (`ASTERISK_GPL_KEY`, byte-exact
//! with its final newline), `AST_BUILDOPT_SUM`, the constants the module passes, and the layout of
//! every struct the module shares with Asterisk. It compiles and runs a small C probe against the
//! headers; the probe prints Rust source into `$OUT_DIR/asterisk_abi.rs`, including compile-time
//! assertions that the Rust `#[repr(C)]` structs in `src/asterisk/ffi.rs` have the headers' offsets and
//! sizes. The probe also checks, with the C compiler, that every Asterisk function the module
//! declares has the prototype the Rust side assumes.
//!
//! `ASTERISK_INCLUDE_DIR` names the include directory (default `/usr/include`); it must hold
//! `asterisk.h` and `asterisk/module.h` (Debian: package asterisk-dev).

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

/// Struct fields whose offsets the Rust side relies on: (C struct, Rust type, fields); a field
/// written `c=rust` has another name in Rust (`self` is a keyword).
const LAYOUTS: &[(&str, &str, &[&str])] = &[
    (
        "struct ast_module_info",
        "ast_module_info",
        &[
            "self=self_",
            "load",
            "reload",
            "unload",
            "name",
            "description",
            "key",
            "flags",
            "buildopt_sum",
            "load_pri",
            "requires",
            "optional_modules",
            "enhances",
            "reserved1",
            "reserved2",
            "reserved3",
            "reserved4",
            "support_level",
        ],
    ),
    (
        "struct ast_cli_entry",
        "ast_cli_entry",
        &["cmda", "summary", "usage", "inuse", "module", "_full_cmd", "cmdlen", "args", "command", "handler", "list"],
    ),
    ("struct ast_cli_args", "ast_cli_args", &["fd", "argc", "argv", "line", "word", "pos", "n"]),
    ("struct ast_variable", "ast_variable", &["name", "value", "next", "file", "lineno"]),
    (
        "struct ast_datastore_info",
        "ast_datastore_info",
        &["type=type_", "duplicate", "destroy", "chan_fixup", "chan_breakdown"],
    ),
    ("struct ast_datastore", "ast_datastore", &["uid", "data", "info", "mod=mod_", "inheritance", "entry"]),
    (
        "struct ast_framehook_interface",
        "ast_framehook_interface",
        &[
            "version",
            "event_cb",
            "destroy_cb",
            "consume_cb",
            "chan_fixup_cb",
            "chan_breakdown_cb",
            "disable_inheritance",
            "data",
        ],
    ),
];

/// Fields of structs the module otherwise treats as opaque (read, and a voice frame's payload
/// written in place by the downlink hook): (C struct, C field, Rust const).
const FIELD_OFFSETS: &[(&str, &str, &str)] = &[
    ("struct ast_frame", "frametype", "AST_FRAME_FRAMETYPE_OFFSET"),
    ("struct ast_frame", "subclass.format", "AST_FRAME_FORMAT_OFFSET"),
    ("struct ast_frame", "datalen", "AST_FRAME_DATALEN_OFFSET"),
    ("struct ast_frame", "samples", "AST_FRAME_SAMPLES_OFFSET"),
    ("struct ast_frame", "data.ptr", "AST_FRAME_DATA_OFFSET"),
    ("struct ast_frame", "seqno", "AST_FRAME_SEQNO_OFFSET"),
    ("struct ast_frame", "src", "AST_FRAME_SRC_OFFSET"),
    ("struct ast_frame", "mallocd", "AST_FRAME_MALLOCD_OFFSET"),
    ("struct ast_frame", "offset", "AST_FRAME_OFFSET_OFFSET"),
];

/// Sizes of structs the module builds without declaring them field by field: (C struct, Rust
/// const).
const SIZES: &[(&str, &str)] = &[("struct ast_frame", "AST_FRAME_SIZE")];

/// Integer constants the module passes to Asterisk: (Rust name, C expression).
const CONSTANTS: &[(&str, &str)] = &[
    ("LOG_DEBUG", "__LOG_DEBUG"),
    ("LOG_NOTICE", "__LOG_NOTICE"),
    ("LOG_WARNING", "__LOG_WARNING"),
    ("LOG_ERROR", "__LOG_ERROR"),
    ("LOG_VERBOSE", "__LOG_VERBOSE"),
    ("AST_MODULE_LOAD_SUCCESS", "AST_MODULE_LOAD_SUCCESS"),
    ("AST_MODULE_LOAD_DECLINE", "AST_MODULE_LOAD_DECLINE"),
    ("AST_MODFLAG_LOAD_ORDER", "AST_MODFLAG_LOAD_ORDER"),
    ("AST_MODPRI_DEFAULT", "AST_MODPRI_DEFAULT"),
    ("AST_MODULE_SUPPORT_EXTENDED", "AST_MODULE_SUPPORT_EXTENDED"),
    ("AST_MAX_CMD_LEN", "AST_MAX_CMD_LEN"),
    ("CLI_INIT", "CLI_INIT"),
    ("CLI_GENERATE", "CLI_GENERATE"),
    ("EVENT_FLAG_SYSTEM", "EVENT_FLAG_SYSTEM"),
    ("EVENT_FLAG_CALL", "EVENT_FLAG_CALL"),
    ("RESULT_SUCCESS", "RESULT_SUCCESS"),
    ("RESULT_SHOWUSAGE", "RESULT_SHOWUSAGE"),
    ("AO2_LOCK_REQ_MUTEX", "AO2_LOCK_REQ_MUTEX"),
    ("AST_FRAME_VOICE", "AST_FRAME_VOICE"),
    ("AST_FRAMEHOOK_EVENT_READ", "AST_FRAMEHOOK_EVENT_READ"),
    ("AST_FRAMEHOOK_EVENT_WRITE", "AST_FRAMEHOOK_EVENT_WRITE"),
    ("AST_FRAMEHOOK_INTERFACE_VERSION", "AST_FRAMEHOOK_INTERFACE_VERSION"),
];

/// The prototypes `src/asterisk/ffi.rs` declares, checked by the C compiler against the headers.
const PROTOTYPES: &[(&str, &str)] = &[
    ("ast_module_register", "void (*)(const struct ast_module_info *)"),
    ("ast_module_unregister", "void (*)(const struct ast_module_info *)"),
    ("__ast_module_running_ref", "struct ast_module *(*)(struct ast_module *, const char *, int, const char *)"),
    ("__ast_module_unref", "void (*)(struct ast_module *, const char *, int, const char *)"),
    ("ast_log", "void (*)(int, const char *, int, const char *, const char *, ...)"),
    ("ast_register_application2", "int (*)(const char *, int (*)(struct ast_channel *, const char *), const char *, const char *, void *)"),
    ("ast_unregister_application", "int (*)(const char *)"),
    ("__ast_cli_register", "int (*)(struct ast_cli_entry *, struct ast_module *)"),
    ("ast_cli_unregister", "int (*)(struct ast_cli_entry *)"),
    ("ast_cli", "void (*)(int, const char *, ...)"),
    ("ast_manager_register2", "int (*)(const char *, int, int (*)(struct mansession *, const struct message *), struct ast_module *, const char *, const char *)"),
    ("ast_manager_unregister", "int (*)(const char *)"),
    ("__ast_manager_event_multichan", "int (*)(int, const char *, int, struct ast_channel **, const char *, int, const char *, const char *, ...)"),
    ("astman_get_header", "const char *(*)(const struct message *, char *)"),
    ("astman_send_ack", "void (*)(struct mansession *, const struct message *, char *)"),
    ("astman_send_error", "void (*)(struct mansession *, const struct message *, char *)"),
    ("astman_append", "void (*)(struct mansession *, const char *, ...)"),
    ("astman_datastore_add", "int (*)(struct mansession *, struct ast_datastore *)"),
    ("astman_datastore_find", "struct ast_datastore *(*)(struct mansession *, const struct ast_datastore_info *, const char *)"),
    ("__ast_datastore_alloc", "struct ast_datastore *(*)(const struct ast_datastore_info *, const char *, struct ast_module *, const char *, int, const char *)"),
    ("ast_datastore_free", "int (*)(struct ast_datastore *)"),
    ("ast_channel_name", "const char *(*)(const struct ast_channel *)"),
    ("ast_channel_uniqueid", "const char *(*)(const struct ast_channel *)"),
    ("ast_safe_sleep", "int (*)(struct ast_channel *, int)"),
    ("ast_check_hangup", "int (*)(struct ast_channel *)"),
    ("pbx_builtin_setvar_helper", "int (*)(struct ast_channel *, const char *, const char *)"),
    ("ast_func_read", "int (*)(struct ast_channel *, const char *, char *, size_t)"),
    ("ast_app_getdata", "enum ast_getdata_result (*)(struct ast_channel *, const char *, char *, int, int)"),
    ("ast_config_load2", "struct ast_config *(*)(const char *, const char *, struct ast_flags)"),
    ("ast_variable_browse", "struct ast_variable *(*)(const struct ast_config *, const char *)"),
    ("ast_config_destroy", "void (*)(struct ast_config *)"),
    ("ast_framehook_attach", "int (*)(struct ast_channel *, struct ast_framehook_interface *)"),
    ("ast_frame_free", "void (*)(struct ast_frame *, int)"),
    ("ast_channel_readtrans", "struct ast_trans_pvt *(*)(const struct ast_channel *)"),
    ("ast_translate", "struct ast_frame *(*)(struct ast_trans_pvt *, struct ast_frame *, int)"),
    ("ast_format_get_name", "const char *(*)(const struct ast_format *)"),
    ("__ao2_lock", "int (*)(void *, enum ao2_lock_req, const char *, const char *, int, const char *)"),
    ("__ao2_unlock", "int (*)(void *, const char *, const char *, int, const char *)"),
    ("__ao2_ref", "int (*)(void *, int, const char *, const char *, int, const char *)"),
    ("ast_queue_frame", "int (*)(struct ast_channel *, struct ast_frame *)"),
    ("ast_format_slin", "struct ast_format **"),
];

fn fail(msg: &str) -> ! {
    // One line the administrator can act on; cargo shows it under "error: failed to run custom build command".
    eprintln!("res_handoff build: {msg}");
    exit(1);
}

fn main() {
    println!("cargo:rerun-if-env-changed=ASTERISK_INCLUDE_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    let include = PathBuf::from(env::var("ASTERISK_INCLUDE_DIR").unwrap_or_else(|_| "/usr/include".into()));
    for header in ["asterisk.h", "asterisk/module.h", "asterisk/buildopts.h"] {
        let p = include.join(header);
        if !p.is_file() {
            fail(&format!(
                "Asterisk headers not found: {} is missing; install asterisk-dev or set ASTERISK_INCLUDE_DIR to the directory holding asterisk.h (tests use the testbed's: tests/testbed/testbed root)/usr/include",
                p.display()
            ));
        }
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let probe_c = out.join("asterisk_probe.c");
    std::fs::write(&probe_c, probe_source())
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", probe_c.display())));
    let probe_bin = out.join("asterisk_probe");
    // Only Asterisk's own headers: the include directory may be a whole foreign /usr/include
    // (the testbed's Debian sid root) whose libc headers must not shadow the compiler's.
    let only_asterisk = out.join("asterisk-include");
    let _ = std::fs::remove_dir_all(&only_asterisk);
    std::fs::create_dir_all(&only_asterisk)
        .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", only_asterisk.display())));
    for entry in ["asterisk.h", "asterisk"] {
        std::os::unix::fs::symlink(include.join(entry), only_asterisk.join(entry))
            .unwrap_or_else(|e| fail(&format!("cannot link {entry} into {}: {e}", only_asterisk.display())));
    }
    compile_probe(&only_asterisk, &probe_c, &probe_bin);
    let output = Command::new(&probe_bin)
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run the header probe {}: {e}", probe_bin.display())));
    if !output.status.success() {
        fail(&format!("the header probe failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    let abi = out.join("asterisk_abi.rs");
    std::fs::write(&abi, output.stdout).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", abi.display())));
}

fn compile_probe(include: &Path, src: &Path, bin: &Path) {
    let compiler = cc::Build::new().cargo_metadata(false).get_compiler();
    let mut cmd = compiler.to_command();
    cmd.arg("-std=gnu11").arg("-w").arg("-I").arg(include).arg("-o").arg(bin).arg(src);
    let output =
        cmd.output().unwrap_or_else(|e| fail(&format!("cannot run the C compiler {:?}: {e}", compiler.path())));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().find(|l| l.contains("error")).unwrap_or("(no message)");
        fail(&format!("the Asterisk headers in {} do not match what res_handoff declares: {first}", include.display()));
    }
}

fn probe_source() -> String {
    let mut c = String::from(
        r#"#define AST_MODULE "res_handoff"
#define AST_MODULE_SELF_SYM __internal_res_handoff_self
#include "asterisk.h"
#include "asterisk/buildopts.h"
#include "asterisk/module.h"
#include "asterisk/cli.h"
#include "asterisk/config.h"
#include "asterisk/manager.h"
#include "asterisk/logger.h"
#include "asterisk/pbx.h"
#include "asterisk/app.h"
#include "asterisk/channel.h"
#include "asterisk/framehook.h"
#include "asterisk/frame.h"
#include "asterisk/format.h"
#include "asterisk/format_cache.h"
#include "asterisk/translate.h"
#include "asterisk/astobj2.h"
#include "asterisk/datastore.h"
#include <stddef.h>
#include <stdio.h>

struct ast_module *__internal_res_handoff_self(void) { return NULL; }

static void bytes(const char *name, const char *s)
{
	printf("/// `%s` from the Asterisk headers, NUL-terminated.\npub const %s: &[u8] = b\"", name, name);
	for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
		printf("\\x%02x", *p);
	}
	printf("\\0\";\n");
}
"#,
    );
    for (name, proto) in PROTOTYPES {
        let _ = writeln!(
            c,
            "_Static_assert(__builtin_types_compatible_p(__typeof__(&{name}), {proto}), \"prototype of {name} is not `{proto}`\");"
        );
    }
    c.push_str("int main(void)\n{\n");
    c.push_str("\tprintf(\"// Generated by module/build.rs from the Asterisk headers. Do not edit.\\n\");\n");
    c.push_str("\tbytes(\"ASTERISK_GPL_KEY\", ASTERISK_GPL_KEY);\n");
    c.push_str("\tbytes(\"AST_BUILDOPT_SUM\", AST_BUILDOPT_SUM);\n");
    for (rust, expr) in CONSTANTS {
        let _ = writeln!(c, "\tprintf(\"pub const {rust}: i32 = %d;\\n\", (int) ({expr}));");
    }
    for (cstruct, rust, fields) in LAYOUTS {
        let _ = writeln!(
            c,
            "\tprintf(\"const _: () = assert!(::core::mem::size_of::<crate::asterisk::ffi::{rust}>() == %zu, \\\"size of {rust} differs from {cstruct} in the Asterisk headers\\\");\\n\", sizeof({cstruct}));"
        );
        for field in *fields {
            // "c_name=rust_name" where the C name is a Rust keyword.
            let (f, rf) = field.split_once('=').unwrap_or((field, field));
            let _ = writeln!(
                c,
                "\tprintf(\"const _: () = assert!(::core::mem::offset_of!(crate::asterisk::ffi::{rust}, {rf}) == %zu, \\\"offset of {rust}.{f} differs from {cstruct} in the Asterisk headers\\\");\\n\", offsetof({cstruct}, {f}));"
            );
        }
    }
    for (cstruct, field, name) in FIELD_OFFSETS {
        let _ = writeln!(c, "\tprintf(\"pub const {name}: usize = %zu;\\n\", offsetof({cstruct}, {field}));");
    }
    for (cstruct, name) in SIZES {
        let _ = writeln!(c, "\tprintf(\"pub const {name}: usize = %zu;\\n\", sizeof({cstruct}));");
    }
    c.push_str("\treturn 0;\n}\n");
    c
}
