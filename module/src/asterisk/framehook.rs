//! Frame hooks: a [`FrameHook`] attached to a channel sees, guarded, every voice frame read from
//! it ([`ReadFrame`]) and written to it ([`WrittenFrame`]), may change a frame's payload in place
//! ([`Voice`]) or swallow it ([`Pass::Drop`]), and hears once when the hook goes
//! ([`FrameHook::detach`]).
//!
//! Ownership, as Asterisk's framehook API has it: in the READ direction a swallowed frame is
//! freed here and the static `ast_null_frame` returned (as Asterisk's own suppress hook does); in
//! the WRITE direction `ast_write` keeps the frame it was given (its caller frees it), so a
//! swallowed frame is only replaced by `ast_null_frame`.

use super::channel::Channel;
use super::ffi;
use crate::guard::guard;
use std::ffi::{c_int, c_void, CStr};
use std::marker::PhantomData;

/// What becomes of a frame a hook saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// It goes on (with whatever the hook wrote into its payload).
    Keep,
    /// It is swallowed.
    Drop,
}

/// A frame hook's data and callbacks. Callbacks run with the channel locked, on whatever thread
/// reads or writes the channel: they must not block.
pub trait FrameHook: Sized + Send + Sync + 'static {
    /// A voice frame read from the channel.
    fn read(&self, frame: &mut ReadFrame<'_>) -> Pass;
    /// A voice frame about to be written to the channel.
    fn write(&self, frame: &mut WrittenFrame<'_>) -> Pass;
    /// The hook is gone (the channel ended or the hook was never attached): called exactly once.
    fn detach(self: Box<Self>);
}

/// The payload of a voice frame: its format's name (`ulaw`, `slin16`, ...), its sample count and
/// its bytes, which the hook may overwrite in place.
pub struct Voice<'a> {
    pub format: &'a [u8],
    pub samples: usize,
    /// The RTP sequence number the frame came with (a frame read from an RTP leg).
    pub seqno: u16,
    pub data: &'a mut [u8],
}

/// A voice frame read from the channel, during the read callback.
pub struct ReadFrame<'a> {
    chan: *mut ffi::ast_channel,
    frame: *mut ffi::ast_frame,
    _call: PhantomData<&'a mut ffi::ast_frame>,
}

impl ReadFrame<'_> {
    /// The frame's payload; None when it has no format or no data.
    pub fn voice(&mut self) -> Option<Voice<'_>> {
        // SAFETY: a live voice frame read from the channel, ours during the callback.
        unsafe { voice(self.frame) }
    }

    /// Whether the frame's source is `src` (a frame queued by [`super::ChannelRef::queue_voice`]
    /// with that source, not one the channel's technology delivered).
    pub fn has_source(&self, src: &CStr) -> bool {
        // SAFETY: a live frame (see the type); `src` is a const char * at the headers' offset,
        // NULL or a NUL-terminated string the frame owns for the callback.
        let p = unsafe { *self.frame.cast::<u8>().add(ffi::AST_FRAME_SRC_OFFSET).cast::<*const std::ffi::c_char>() };
        // SAFETY: as above.
        !p.is_null() && unsafe { CStr::from_ptr(p) } == src
    }

    /// Feeds the frame to the channel's read translation path (if it has one) and frees what comes
    /// out: the channel's decoder hears the frame even if the hook swallows it.
    pub fn feed_decoder(&self) {
        if self.chan.is_null() {
            return;
        }
        // SAFETY: the channel is locked (ast_read holds it around both the hooks and its own
        // translation) and the frame is a live voice frame in the channel's native format, which
        // ast_translate (consume 0) only reads.
        unsafe {
            let path = ffi::ast_channel_readtrans(self.chan);
            if path.is_null() {
                return;
            }
            let out = ffi::ast_translate(path, self.frame, 0);
            if !out.is_null() && out != std::ptr::addr_of_mut!(ffi::ast_null_frame) {
                ffi::ast_frame_free(out, 1);
            }
        }
    }
}

/// A voice frame about to be written to the channel, during the write callback.
pub struct WrittenFrame<'a> {
    frame: *mut ffi::ast_frame,
    _call: PhantomData<&'a mut ffi::ast_frame>,
}

impl WrittenFrame<'_> {
    /// The frame's payload; None when it has no format or no data.
    pub fn voice(&mut self) -> Option<Voice<'_>> {
        // SAFETY: written by ast_write's caller, who keeps it (and so its payload) for us alone
        // until ast_write returns.
        unsafe { voice(self.frame) }
    }
}

/// The payload of `frame`.
///
/// # Safety
/// `frame` is a live voice frame handed to a frame hook callback, whose payload nobody else
/// touches during the callback; the returned borrow ends before the callback returns.
unsafe fn voice<'a>(frame: *mut ffi::ast_frame) -> Option<Voice<'a>> {
    let base = frame.cast::<u8>();
    // SAFETY: the offsets are those of struct ast_frame in the headers (build.rs), each field
    // of the type read here; the frame is live (caller's contract).
    let (format, datalen, samples, data, seqno) = unsafe {
        (
            *base.add(ffi::AST_FRAME_FORMAT_OFFSET).cast::<*const ffi::ast_format>(),
            *base.add(ffi::AST_FRAME_DATALEN_OFFSET).cast::<c_int>(),
            *base.add(ffi::AST_FRAME_SAMPLES_OFFSET).cast::<c_int>(),
            *base.add(ffi::AST_FRAME_DATA_OFFSET).cast::<*mut u8>(),
            *base.add(ffi::AST_FRAME_SEQNO_OFFSET).cast::<c_int>(),
        )
    };
    if format.is_null() || data.is_null() || datalen <= 0 || samples <= 0 {
        return None;
    }
    // SAFETY: a voice frame's format is a live ast_format, which owns its NUL-terminated name.
    let name = unsafe { ffi::ast_format_get_name(format) };
    let format = if name.is_null() {
        &b""[..]
    } else {
        // SAFETY: non-NULL and NUL-terminated, alive as long as the format (the frame holds it).
        unsafe { CStr::from_ptr(name) }.to_bytes()
    };
    // SAFETY: data points to datalen bytes of the frame's payload, exclusively ours during the
    // callback (caller's contract).
    let data = unsafe { std::slice::from_raw_parts_mut(data, datalen as usize) };
    Some(Voice { format, samples: samples as usize, seqno: seqno as u16, data })
}

impl Channel {
    /// Attaches `hook` to the channel (voice frames only, not inherited by channels made from
    /// it). On failure the hook is detached at once ([`FrameHook::detach`]).
    pub fn attach_hook<H: FrameHook>(&self, hook: H) -> Result<(), String> {
        let data = Box::into_raw(Box::new(hook));
        let mut iface = ffi::ast_framehook_interface {
            version: ffi::AST_FRAMEHOOK_INTERFACE_VERSION as u16,
            event_cb: Some(on_event::<H>),
            destroy_cb: Some(on_destroy::<H>),
            consume_cb: Some(consumes),
            chan_fixup_cb: None,
            chan_breakdown_cb: None,
            disable_inheritance: 1,
            data: data.cast(),
        };
        let chan = self.0;
        // SAFETY: chan is the application's live channel; the framehook API requires the channel
        // lock, taken and released here around the attach; Asterisk copies the interface.
        let id = unsafe {
            ffi::__ao2_lock(
                chan.cast(),
                ffi::AO2_LOCK_REQ_MUTEX,
                c"framehook.rs".as_ptr(),
                c"attach_hook".as_ptr(),
                0,
                c"chan".as_ptr(),
            );
            let id = ffi::ast_framehook_attach(chan, &mut iface);
            ffi::__ao2_unlock(chan.cast(), c"framehook.rs".as_ptr(), c"attach_hook".as_ptr(), 0, c"chan".as_ptr());
            id
        };
        if id < 0 {
            // SAFETY: Asterisk did not take the data: it is still ours.
            unsafe { Box::from_raw(data) }.detach();
            return Err("ast_framehook_attach failed".into());
        }
        Ok(())
    }
}

extern "C" fn consumes(_data: *mut c_void, frame_type: c_int) -> c_int {
    c_int::from(frame_type == ffi::AST_FRAME_VOICE)
}

extern "C" fn on_event<H: FrameHook>(
    chan: *mut ffi::ast_channel,
    frame: *mut ffi::ast_frame,
    event: c_int,
    data: *mut c_void,
) -> *mut ffi::ast_frame {
    // On a panic the frame passes unchanged: the call goes on as if the module were not there.
    guard("frame hook", frame, || {
        if frame.is_null() || data.is_null() {
            return frame;
        }
        // SAFETY: frame is a live frame Asterisk hands us with the channel locked; frametype is
        // an int at the offset the headers give (checked at build time).
        let frametype = unsafe { *(frame.cast::<u8>().add(ffi::AST_FRAME_FRAMETYPE_OFFSET).cast::<c_int>()) };
        if frametype != ffi::AST_FRAME_VOICE {
            return frame;
        }
        // SAFETY: data is the H boxed in attach_hook(); it lives until on_destroy.
        let hook = unsafe { &*(data as *const H) };
        match event {
            ffi::AST_FRAMEHOOK_EVENT_READ => {
                match hook.read(&mut ReadFrame { chan, frame, _call: PhantomData }) {
                    Pass::Keep => frame,
                    // SAFETY: in the read direction, returning another frame makes us responsible
                    // for freeing this one; ast_null_frame is static.
                    Pass::Drop => unsafe {
                        ffi::ast_frame_free(frame, 1);
                        std::ptr::addr_of_mut!(ffi::ast_null_frame)
                    },
                }
            }
            ffi::AST_FRAMEHOOK_EVENT_WRITE => match hook.write(&mut WrittenFrame { frame, _call: PhantomData }) {
                Pass::Keep => frame,
                // ast_write's caller still owns and frees the original; ast_null_frame is static.
                Pass::Drop => std::ptr::addr_of_mut!(ffi::ast_null_frame),
            },
            _ => frame,
        }
    })
}

extern "C" fn on_destroy<H: FrameHook>(data: *mut c_void) {
    guard("frame hook destroy", (), || {
        if data.is_null() {
            return;
        }
        // SAFETY: data is the H boxed in attach_hook(), handed back exactly once.
        unsafe { Box::from_raw(data as *mut H) }.detach();
    })
}
