//! CLI commands: a [`CliCommand`] registered with Asterisk's CLI prints, guarded, what it
//! returns. Asterisk links a registered entry into its own list, so each entry is allocated
//! here on registration and freed after it is unregistered.

use super::ffi;
use super::{cstring, Module};
use crate::guard::guard;
use std::ffi::{c_char, c_int, CStr};
use std::ptr::{null, null_mut};
use std::sync::Mutex;

/// What a CLI command's run gives.
pub enum CliOutcome {
    /// Printed to the CLI session.
    Print(String),
    /// Wrong arguments: Asterisk prints the usage.
    ShowUsage,
}

/// A CLI command (new style: the words and usage are given on `CLI_INIT`).
pub trait CliCommand {
    /// The command's words, e.g. `handoff show status`.
    const COMMAND: &'static CStr;
    const SUMMARY: &'static CStr;
    const USAGE: &'static CStr;
    /// Runs the command typed with `argc` words.
    fn run(argc: usize) -> CliOutcome;
}

/// The entries registered now, by command (the address of a leaked `ast_cli_entry`).
static ENTRIES: Mutex<Vec<(&'static CStr, usize)>> = Mutex::new(Vec::new());

fn entries() -> std::sync::MutexGuard<'static, Vec<(&'static CStr, usize)>> {
    ENTRIES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers `C` as a CLI command of `module`.
pub fn register<C: CliCommand>(module: Module) -> Result<(), ()> {
    let entry = Box::into_raw(Box::new(ffi::ast_cli_entry {
        cmda: [null(); ffi::AST_MAX_CMD_LEN as usize],
        summary: C::SUMMARY.as_ptr(),
        usage: null(),
        inuse: 0,
        module: null_mut(),
        _full_cmd: null_mut(),
        cmdlen: 0,
        args: 0,
        command: null_mut(),
        handler: Some(handler::<C>),
        list: ffi::ast_cli_list_entry { next: null_mut() },
    }));
    // SAFETY: entry is a fresh, fully initialised entry that stays allocated until unregister
    // below has taken it out of Asterisk's list; module is the loader's handle.
    let rc = unsafe { ffi::__ast_cli_register(entry, module.as_ptr()) };
    if rc != 0 {
        // SAFETY: Asterisk refused it and holds no pointer to it.
        drop(unsafe { Box::from_raw(entry) });
        return Err(());
    }
    entries().push((C::COMMAND, entry as usize));
    Ok(())
}

pub fn unregister<C: CliCommand>() {
    let mut all = entries();
    while let Some(i) = all.iter().position(|(c, _)| *c == C::COMMAND) {
        let entry = all.swap_remove(i).1 as *mut ffi::ast_cli_entry;
        // SAFETY: the entry registered above; ast_cli_unregister takes it out of the list and
        // waits until no CLI thread runs it, so it is ours again to free.
        unsafe {
            ffi::ast_cli_unregister(entry);
            drop(Box::from_raw(entry));
        }
    }
}

extern "C" fn handler<C: CliCommand>(e: *mut ffi::ast_cli_entry, cmd: c_int, a: *mut ffi::ast_cli_args) -> *mut c_char {
    guard(C::COMMAND.to_str().unwrap_or("CLI command"), null_mut(), || {
        if cmd == ffi::CLI_INIT {
            // SAFETY: on CLI_INIT Asterisk passes our own entry; command and usage are statics.
            unsafe {
                (*e).command = C::COMMAND.as_ptr() as *mut c_char;
                (*e).usage = C::USAGE.as_ptr();
            }
            return null_mut();
        }
        if cmd == ffi::CLI_GENERATE || a.is_null() {
            return null_mut();
        }
        // SAFETY: for an execution Asterisk passes valid args.
        let (fd, argc) = unsafe { ((*a).fd, (*a).argc) };
        match C::run(usize::try_from(argc).unwrap_or(0)) {
            CliOutcome::Print(text) => {
                let t = cstring(&text);
                // SAFETY: fixed format string with one string argument.
                unsafe { ffi::ast_cli(fd, c"%s".as_ptr(), t.as_ptr()) };
                ffi::RESULT_SUCCESS as usize as *mut c_char
            }
            CliOutcome::ShowUsage => ffi::RESULT_SHOWUSAGE as usize as *mut c_char,
        }
    })
}
