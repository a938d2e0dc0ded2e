//! The module as Asterisk's loader sees it: the `ast_module_info` it reads (license key and
//! build-options sum taken from the headers at build time), registered from
//! `.init_array`/`.fini_array` as `AST_MODULE_INFO` does in C ([`declare_module!`]), the guarded
//! load/unload/reload entries that call a [`Lifecycle`], and the loader's handle ([`Module`]).

use super::ffi;
use crate::guard::guard;
use std::ffi::{c_char, c_int, CStr};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicPtr, Ordering};

/// What the module does when the loader loads, unloads or reloads it.
pub trait Lifecycle {
    /// Err declines the load (the module is not used).
    fn load(module: Module) -> Result<(), ()>;
    /// Err refuses the unload (the loader may still force it: see `residency.rs`).
    fn unload(module: Module) -> Result<(), ()>;
    fn reload(module: Module) -> Result<(), ()>;
}

/// The loader's handle for this module (`AST_MODULE_SELF`), needed to register anything.
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub struct Module(*mut ffi::ast_module);

/// The loader's view of the module (`struct ast_module_info`); only [`declare_module!`] holds
/// one.
#[repr(transparent)]
pub struct ModuleInfo(ffi::ast_module_info);

/// The handle the loader wrote into our `ast_module_info` at registration (NULL before).
static SELF: AtomicPtr<ffi::ast_module> = AtomicPtr::new(null_mut());

impl Module {
    /// This module's handle.
    pub fn this() -> Self {
        Self(SELF.load(Ordering::Acquire))
    }

    pub(crate) fn as_ptr(self) -> *mut ffi::ast_module {
        self.0
    }

    /// Whether the loader counts the module as running (false after a forced unload). It takes
    /// and drops a reference without the loader's list lock, so any thread may ask.
    pub fn running(self) -> bool {
        if self.0.is_null() {
            return false;
        }
        // SAFETY: self.0 is the loader's handle for this module, which the loader keeps
        // allocated while the library is mapped (freed by ast_module_unregister from .fini_array).
        unsafe {
            let r = ffi::__ast_module_running_ref(self.0, c"module.rs".as_ptr(), 0, c"running".as_ptr());
            if r.is_null() {
                return false;
            }
            ffi::__ast_module_unref(r, c"module.rs".as_ptr(), 0, c"running".as_ptr());
            true
        }
    }
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

/// The `ast_module_info` of a module run by `L` (what `AST_MODULE_INFO` fills in in C).
pub const fn info<L: Lifecycle>(name: &'static CStr, description: &'static CStr) -> ModuleInfo {
    ModuleInfo(ffi::ast_module_info {
        self_: null_mut(),
        load: Some(load::<L>),
        reload: Some(reload::<L>),
        unload: Some(unload::<L>),
        name: name.as_ptr(),
        description: description.as_ptr(),
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
    })
}

extern "C" fn load<L: Lifecycle>() -> c_int {
    guard("load", ffi::AST_MODULE_LOAD_DECLINE, || match L::load(Module::this()) {
        Ok(()) => ffi::AST_MODULE_LOAD_SUCCESS,
        Err(()) => ffi::AST_MODULE_LOAD_DECLINE,
    })
}

extern "C" fn unload<L: Lifecycle>() -> c_int {
    guard("unload", -1, || if L::unload(Module::this()).is_ok() { 0 } else { -1 })
}

extern "C" fn reload<L: Lifecycle>() -> c_int {
    guard("reload", -1, || if L::reload(Module::this()).is_ok() { 0 } else { -1 })
}

/// Registers `info` with the loader (from `.init_array`, while the loader dlopens us) and keeps
/// the handle the loader wrote into it.
///
/// # Safety
/// `info` is the module's static `ast_module_info`, registered once and kept until
/// [`unregister`].
pub unsafe fn register(info: *mut ModuleInfo) {
    guard("module registration", (), || {
        // SAFETY: per the contract; the loader keeps the pointer until ast_module_unregister and
        // writes `self_` during the call.
        unsafe {
            ffi::ast_module_register(info.cast());
            SELF.store((*info).0.self_, Ordering::Release);
        }
    })
}

/// Unregisters `info` (from `.fini_array`).
///
/// # Safety
/// `info` is the pointer given to [`register`].
pub unsafe fn unregister(info: *mut ModuleInfo) {
    guard("module unregistration", (), || {
        // SAFETY: the same pointer that was registered.
        unsafe { ffi::ast_module_unregister(info.cast()) }
    })
}

/// Declares the module to Asterisk's loader: its `ast_module_info` (run by a [`Lifecycle`]),
/// registered from `.init_array` and unregistered from `.fini_array`, and the
/// `AST_MODULE_SELF_SYM` function C modules export (`__internal_<name>_self`).
#[macro_export]
macro_rules! declare_module {
    ($lifecycle:ty, name: $name:expr, description: $description:expr, self_symbol: $self_symbol:ident) => {
        #[allow(unsafe_code)]
        const _: () = {
            /// Written by the loader (`self_`), hence `static mut`; touched only through raw
            /// pointers, by the loader and the two functions below.
            static mut MODULE_INFO: $crate::asterisk::module::ModuleInfo =
                $crate::asterisk::module::info::<$lifecycle>($name, $description);

            extern "C" fn register_module() {
                // SAFETY: runs once from .init_array; the static lives as long as the mapping.
                unsafe { $crate::asterisk::module::register(::std::ptr::addr_of_mut!(MODULE_INFO)) }
            }

            extern "C" fn unregister_module() {
                // SAFETY: the pointer registered above.
                unsafe { $crate::asterisk::module::unregister(::std::ptr::addr_of_mut!(MODULE_INFO)) }
            }

            #[used]
            #[link_section = ".init_array"]
            static REGISTER: extern "C" fn() = register_module;
            #[used]
            #[link_section = ".fini_array"]
            static UNREGISTER: extern "C" fn() = unregister_module;

            #[no_mangle]
            pub extern "C" fn $self_symbol() -> $crate::asterisk::Module {
                $crate::asterisk::Module::this()
            }
        };
    };
}
