//! The C ABI between the operator and a native scheduling plugin (a `cdylib`). See the crate docs for the
//! contract; [`guest`] has the plugin-side helpers.

use std::ffi::{CStr, c_char, c_void};

use serde::{Deserialize, Serialize};

use crate::model::{Placement, Snapshot};
use crate::pipeline::ScheduleError;

/// The ABI major version. It is part of the entry symbol's name; a plugin for another major is not loaded.
pub const ABI_MAJOR: u16 = 1;
/// The ABI minor version. Minors only append fields to the tables and to the JSON messages.
pub const ABI_MINOR: u16 = 0;
/// The entry symbol of ABI major 1, of type [`EntryV1`].
pub const ENTRY_SYMBOL: &CStr = c"weft_scheduler_plugin_v1";
/// Prefix of every major's entry symbol: `weft_scheduler_plugin_v<major>`.
pub const ENTRY_SYMBOL_PREFIX: &str = "weft_scheduler_plugin_v";

/// The entry point: called once after loading, with the host's callbacks (valid for the life of the
/// process); returns the plugin's table (which must stay valid, and unchanged, for the life of the process),
/// or null on failure.
pub type EntryV1 = unsafe extern "C" fn(host: *const HostApiV1) -> *const PluginApiV1;

/// Call status codes.
pub mod status {
    /// Success; the output buffer holds the JSON result.
    pub const OK: i32 = 0;
    /// Failure; the output buffer holds a UTF-8 message.
    pub const ERROR: i32 = 1;
    /// The plugin caught a panic; the output buffer holds the panic message.
    pub const PANIC: i32 = 2;
}

/// Log levels for [`HostApiV1::log`].
pub mod log_level {
    /// Error.
    pub const ERROR: u32 = 1;
    /// Warning.
    pub const WARN: u32 = 2;
    /// Information.
    pub const INFO: u32 = 3;
    /// Debugging.
    pub const DEBUG: u32 = 4;
    /// Tracing.
    pub const TRACE: u32 = 5;
}

/// Bytes owned by whoever allocated them. A plugin's output buffers go back through
/// [`PluginApiV1::free_buffer`]; the host never frees them itself.
#[repr(C)]
#[derive(Debug)]
pub struct ByteBuffer {
    /// Start of the bytes; null for an empty buffer.
    pub ptr: *mut u8,
    /// Number of bytes.
    pub len: usize,
    /// Allocation size, for the allocator that made it.
    pub capacity: usize,
}

impl ByteBuffer {
    /// An empty buffer, the initial value of every output argument.
    pub const EMPTY: ByteBuffer = ByteBuffer {
        ptr: std::ptr::null_mut(),
        len: 0,
        capacity: 0,
    };

    /// Hands a vector's allocation over to a buffer (the plugin side of an output).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        ByteBuffer {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            capacity: bytes.capacity(),
        }
    }

    /// Takes the allocation back into a vector.
    ///
    /// # Safety
    /// The buffer must come from [`ByteBuffer::from_vec`] in this same binary, and not have been taken back.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        if self.ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: the caller promises the parts come from `from_vec` with this binary's allocator.
        unsafe { Vec::from_raw_parts(self.ptr, self.len, self.capacity) }
    }

    /// The bytes.
    ///
    /// # Safety
    /// `ptr` must be null or point to `len` readable bytes that live as long as the returned slice.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: forwarded to the caller.
        unsafe { bytes(self.ptr, self.len) }
    }
}

/// Reads `len` bytes at `ptr`, treating null as empty.
///
/// # Safety
/// `ptr` must be null or point to `len` readable bytes that live for `'a`.
pub unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: forwarded to the caller.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// Writes a log record through the host: `context` as given in the table, `level` from [`log_level`], and a
/// UTF-8 message that is only borrowed for the call.
pub type LogFn = unsafe extern "C" fn(context: *const c_void, level: u32, message: *const u8, len: usize);

/// What the host offers the plugin. Versioned like [`PluginApiV1`]: read a field only if `struct_size`
/// covers it.
#[repr(C)]
#[derive(Debug)]
pub struct HostApiV1 {
    /// The host's ABI major.
    pub abi_major: u16,
    /// The host's ABI minor.
    pub abi_minor: u16,
    /// `size_of::<HostApiV1>()` as the host knows it.
    pub struct_size: u32,
    /// Passed back to every callback.
    pub context: *const c_void,
    /// Logging into the host's `tracing` subscriber.
    pub log: Option<LogFn>,
}

// SAFETY: the table is immutable once built, and its callbacks are thread-safe by contract.
unsafe impl Sync for HostApiV1 {}
// SAFETY: as above.
unsafe impl Send for HostApiV1 {}

/// Opens a session from an [`OpenSessionInput`]; on success writes the handle to `session`.
pub type OpenSessionFn = unsafe extern "C" fn(
    input: *const u8,
    len: usize,
    session: *mut *mut c_void,
    out: *mut ByteBuffer,
) -> i32;
/// A call on a session: `place` (input: a `WorkloadRequest`; output: a [`PlaceOutput`]) or `apply` (input: an
/// array of `SnapshotUpdate`s; output: empty).
pub type SessionCallFn =
    unsafe extern "C" fn(session: *mut c_void, input: *const u8, len: usize, out: *mut ByteBuffer) -> i32;
/// Frees an output buffer.
pub type FreeBufferFn = unsafe extern "C" fn(buffer: ByteBuffer);
/// Closes a session; the handle is not used again.
pub type CloseSessionFn = unsafe extern "C" fn(session: *mut c_void);

/// What the plugin offers the host. Fields are never reordered or removed within a major; minors append.
#[repr(C)]
#[derive(Debug)]
pub struct PluginApiV1 {
    /// Must be [`ABI_MAJOR`].
    pub abi_major: u16,
    /// The minor the plugin was built against.
    pub abi_minor: u16,
    /// `size_of::<PluginApiV1>()` as the plugin knows it; at least [`PLUGIN_API_V1_SIZE`].
    pub struct_size: u32,
    /// The policy name (NUL-terminated UTF-8, static), what `schedulerName` selects.
    pub name: *const c_char,
    /// Frees an output buffer this plugin allocated.
    pub free_buffer: Option<FreeBufferFn>,
    /// Opens a session.
    pub open_session: Option<OpenSessionFn>,
    /// Places one workload and counts it in the session.
    pub place: Option<SessionCallFn>,
    /// Applies snapshot updates to the session.
    pub apply: Option<SessionCallFn>,
    /// Closes a session.
    pub close_session: Option<CloseSessionFn>,
}

// SAFETY: the table is immutable once built (plugins keep it in a `static`) and its functions are
// thread-safe by contract.
unsafe impl Sync for PluginApiV1 {}
// SAFETY: as above.
unsafe impl Send for PluginApiV1 {}

/// Size of the ABI 1.0 plugin table: the least `struct_size` a host accepts.
pub const PLUGIN_API_V1_SIZE: usize = size_of::<PluginApiV1>();
/// Size of the ABI 1.0 host table.
pub const HOST_API_V1_SIZE: usize = size_of::<HostApiV1>();

/// Input of `open_session`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenSessionInput {
    /// The hosts and settings.
    pub snapshot: Snapshot,
    /// The session seed (see [`crate::SplitMix64`]).
    pub seed: u64,
}

/// Output of `place`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PlaceOutput {
    /// The workload goes here (and was counted in the session).
    Placed(Placement),
    /// The workload cannot be placed; nothing was counted.
    Failed(ScheduleError),
}

impl From<Result<Placement, ScheduleError>> for PlaceOutput {
    fn from(result: Result<Placement, ScheduleError>) -> Self {
        match result {
            Ok(placement) => PlaceOutput::Placed(placement),
            Err(error) => PlaceOutput::Failed(error),
        }
    }
}

/// Helpers for writing a plugin: each `extern "C"` export wraps its body in [`guest::run`], which catches
/// panics and fills the output buffer; [`guest::open`], [`guest::place`] and friends run any [`Policy`]
/// behind the session functions.
///
/// [`Policy`]: crate::Policy
pub mod guest {
    use std::any::Any;
    use std::ffi::c_void;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::OnceLock;

    use super::{ByteBuffer, HostApiV1, LogFn, OpenSessionInput, PlaceOutput, status};
    use crate::model::{SnapshotUpdate, WorkloadRequest};
    use crate::session::{Policy, Session};

    /// Runs an export's body with panics caught; writes its output (JSON, or the error or panic message) to
    /// `out` and returns the status code.
    ///
    /// # Safety
    /// `out` must be null or valid for a write of a [`ByteBuffer`].
    pub unsafe fn run(out: *mut ByteBuffer, body: impl FnOnce() -> Result<Vec<u8>, String>) -> i32 {
        let (code, bytes) = match catch_unwind(AssertUnwindSafe(body)) {
            Ok(Ok(bytes)) => (status::OK, bytes),
            Ok(Err(message)) => (status::ERROR, message.into_bytes()),
            Err(payload) => (status::PANIC, panic_message(payload.as_ref()).into_bytes()),
        };
        if !out.is_null() {
            // SAFETY: the caller promises `out` is writable.
            unsafe { out.write(ByteBuffer::from_vec(bytes)) };
        }
        code
    }

    /// Runs a body that returns nothing (`free_buffer`, `close_session`) with panics caught and dropped.
    pub fn run_quietly(body: impl FnOnce()) {
        let _ = catch_unwind(AssertUnwindSafe(body));
    }

    /// The text of a panic payload.
    pub fn panic_message(payload: &(dyn Any + Send)) -> String {
        if let Some(text) = payload.downcast_ref::<&str>() {
            (*text).to_owned()
        } else if let Some(text) = payload.downcast_ref::<String>() {
            text.clone()
        } else {
            "panic with a non-text payload".to_owned()
        }
    }

    /// Frees a buffer this plugin returned (the body of `free_buffer`).
    ///
    /// # Safety
    /// The buffer must have been returned by this plugin and not freed before.
    pub unsafe fn free_buffer(buffer: ByteBuffer) {
        // SAFETY: forwarded to the caller.
        run_quietly(|| drop(unsafe { buffer.into_vec() }));
    }

    /// Parses an `open_session` input and opens a session of `policy`; returns the handle to hand out.
    pub fn open(policy: &dyn Policy, input: &[u8]) -> Result<*mut c_void, String> {
        let input: OpenSessionInput =
            serde_json::from_slice(input).map_err(|error| format!("invalid open_session input: {error}"))?;
        let session = policy
            .open(input.snapshot, input.seed)
            .map_err(|error| error.to_string())?;
        Ok(Box::into_raw(Box::new(session)).cast())
    }

    /// The session behind a handle from [`open`].
    ///
    /// # Safety
    /// `handle` must be null or a live handle from [`open`], not used by another thread during the call.
    pub unsafe fn session<'a>(handle: *mut c_void) -> Result<&'a mut dyn Session, String> {
        let session = handle.cast::<Box<dyn Session>>();
        if session.is_null() {
            return Err("null session handle".to_owned());
        }
        // SAFETY: forwarded to the caller.
        Ok(unsafe { &mut **session })
    }

    /// Closes a session from [`open`] (the body of `close_session`).
    ///
    /// # Safety
    /// `handle` must be null or a live handle from [`open`]; it must not be used afterwards.
    pub unsafe fn close(handle: *mut c_void) {
        let session = handle.cast::<Box<dyn Session>>();
        if !session.is_null() {
            // SAFETY: forwarded to the caller.
            run_quietly(|| drop(unsafe { Box::from_raw(session) }));
        }
    }

    /// Decodes a `place` input.
    pub fn decode_request(input: &[u8]) -> Result<WorkloadRequest, String> {
        serde_json::from_slice(input).map_err(|error| format!("invalid place input: {error}"))
    }

    /// Places a decoded request and encodes the output.
    pub fn place_request(session: &mut dyn Session, request: &WorkloadRequest) -> Result<Vec<u8>, String> {
        let output = PlaceOutput::from(session.place(request));
        serde_json::to_vec(&output).map_err(|error| format!("cannot encode place output: {error}"))
    }

    /// The body of `place`.
    pub fn place(session: &mut dyn Session, input: &[u8]) -> Result<Vec<u8>, String> {
        place_request(session, &decode_request(input)?)
    }

    /// The body of `apply`.
    pub fn apply(session: &mut dyn Session, input: &[u8]) -> Result<Vec<u8>, String> {
        let updates: Vec<SnapshotUpdate> =
            serde_json::from_slice(input).map_err(|error| format!("invalid apply input: {error}"))?;
        session.apply(&updates).map_err(|error| error.to_string())?;
        Ok(Vec::new())
    }

    struct HostCallbacks {
        context: usize,
        log: Option<LogFn>,
    }

    static HOST: OnceLock<HostCallbacks> = OnceLock::new();

    /// Keeps the host's callbacks (call from the entry point). Tables of another major, or too small to hold
    /// the callbacks, are ignored: the plugin then runs without logging.
    ///
    /// # Safety
    /// `host` must be null or point to a [`HostApiV1`] prefix of at least its `struct_size` bytes, valid for
    /// the life of the process.
    pub unsafe fn set_host(host: *const HostApiV1) {
        if host.is_null() {
            return;
        }
        // SAFETY: the caller promises a readable table; the header fields exist in every minor.
        let table = unsafe { &*host };
        let needed = std::mem::offset_of!(HostApiV1, log) + size_of::<Option<LogFn>>();
        if table.abi_major != super::ABI_MAJOR || (table.struct_size as usize) < needed {
            return;
        }
        let _ = HOST.set(HostCallbacks {
            context: table.context as usize,
            log: table.log,
        });
    }

    /// Logs through the host, if it offered logging.
    pub fn log(level: u32, message: &str) {
        if let Some(HostCallbacks {
            context,
            log: Some(log),
        }) = HOST.get()
        {
            // SAFETY: the host promised the callback and context stay valid for the life of the process.
            unsafe { log(*context as *const c_void, level, message.as_ptr(), message.len()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HostInfo;

    #[test]
    fn the_entry_symbol_carries_the_major() {
        assert_eq!(
            ENTRY_SYMBOL.to_str().unwrap(),
            format!("{ENTRY_SYMBOL_PREFIX}{ABI_MAJOR}")
        );
    }

    #[test]
    fn the_header_layout_is_fixed() {
        assert_eq!(std::mem::offset_of!(PluginApiV1, abi_major), 0);
        assert_eq!(std::mem::offset_of!(PluginApiV1, abi_minor), 2);
        assert_eq!(std::mem::offset_of!(PluginApiV1, struct_size), 4);
        assert_eq!(std::mem::offset_of!(PluginApiV1, name), 8);
        assert_eq!(PLUGIN_API_V1_SIZE, 8 + 6 * size_of::<usize>());
        assert_eq!(HOST_API_V1_SIZE, 8 + 2 * size_of::<usize>());
    }

    #[test]
    fn guest_run_reports_output_errors_and_panics() {
        let mut out = ByteBuffer::EMPTY;
        // SAFETY: `out` is a valid buffer; each output is freed once, by the same binary.
        unsafe {
            assert_eq!(guest::run(&mut out, || Ok(b"{}".to_vec())), status::OK);
            assert_eq!(out.as_slice(), b"{}");
            guest::free_buffer(std::mem::replace(&mut out, ByteBuffer::EMPTY));
            assert_eq!(guest::run(&mut out, || Err("bad input".into())), status::ERROR);
            assert_eq!(out.as_slice(), b"bad input");
            guest::free_buffer(std::mem::replace(&mut out, ByteBuffer::EMPTY));
            assert_eq!(guest::run(&mut out, || panic!("boom {}", 7)), status::PANIC);
            assert_eq!(out.as_slice(), b"boom 7");
            guest::free_buffer(out);
        }
    }

    #[test]
    fn place_output_json_has_a_documented_shape() {
        let placed = PlaceOutput::Placed(Placement {
            host_id: "h".into(),
            host_name: "n".into(),
            score: -3,
            feasible_hosts: 2,
        });
        assert_eq!(
            serde_json::to_string(&placed).unwrap(),
            r#"{"placed":{"hostId":"h","hostName":"n","score":-3,"feasibleHosts":2}}"#
        );
        let input = OpenSessionInput {
            snapshot: Snapshot::new(vec![HostInfo::default()]).unwrap(),
            seed: 9,
        };
        let json = serde_json::to_value(&input).unwrap();
        assert_eq!(json["seed"], 9);
        assert_eq!(json["snapshot"]["allowSharedHosts"], true);
    }
}
