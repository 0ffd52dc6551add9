//! A native scheduling plugin, `misbehaving-spread`, for testing how the operator contains bad plugins. It
//! places like the built-in `spread`, except for workloads with these names:
//!
//! | workload name | the plugin |
//! |---|---|
//! | [`PANIC`] | panics inside `place` (caught at its boundary) |
//! | [`ERROR`] | returns an error |
//! | [`GARBAGE`] | returns bytes that are not JSON |
//! | [`UNKNOWN_HOST`] | chooses a host ID that is not in the snapshot |
//! | [`INFEASIBLE_HOST`] | chooses the first host that fails the standard filters |
//! | [`BAD_STATUS`] | returns status 42 |

use std::ffi::{CStr, c_void};
use std::panic::catch_unwind;
use std::sync::OnceLock;

use weft_scheduler_api::abi::{self, ByteBuffer, HostApiV1, PlaceOutput, PluginApiV1, guest};
use weft_scheduler_api::{Context, Pipeline, Placement, Session, WorkloadRequest};

/// The policy name.
pub const NAME: &CStr = c"misbehaving-spread";
/// Panics inside `place`.
pub const PANIC: &str = "weft-test-panic";
/// Returns an error from `place`.
pub const ERROR: &str = "weft-test-error";
/// Returns bytes that are not JSON.
pub const GARBAGE: &str = "weft-test-garbage";
/// Chooses a host ID that is not in the snapshot.
pub const UNKNOWN_HOST: &str = "weft-test-unknown-host";
/// Chooses the first host that fails the standard filters.
pub const INFEASIBLE_HOST: &str = "weft-test-infeasible-host";
/// Returns a status code the ABI does not define.
pub const BAD_STATUS: &str = "weft-test-bad-status";

fn policy() -> &'static Pipeline {
    static POLICY: OnceLock<Pipeline> = OnceLock::new();
    POLICY.get_or_init(weft_scheduler_builtin::spread)
}

static API: PluginApiV1 = PluginApiV1 {
    abi_major: abi::ABI_MAJOR,
    abi_minor: abi::ABI_MINOR,
    struct_size: size_of::<PluginApiV1>() as u32,
    name: NAME.as_ptr(),
    free_buffer: Some(free_buffer),
    open_session: Some(open_session),
    place: Some(place),
    apply: Some(apply),
    close_session: Some(close_session),
};

/// The entry point.
///
/// # Safety
/// `host` must be null or point to a host table valid for the life of the process.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn weft_scheduler_plugin_v1(host: *const HostApiV1) -> *const PluginApiV1 {
    // SAFETY: forwarded to the caller.
    catch_unwind(|| unsafe { guest::set_host(host) }).map_or(std::ptr::null(), |()| &API)
}

unsafe extern "C" fn free_buffer(buffer: ByteBuffer) {
    // SAFETY: the host returns only buffers this plugin produced, once each.
    unsafe { guest::free_buffer(buffer) }
}

unsafe extern "C" fn open_session(
    input: *const u8,
    len: usize,
    session: *mut *mut c_void,
    out: *mut ByteBuffer,
) -> i32 {
    // SAFETY: the host passes a readable input, a writable handle slot and a writable output buffer.
    unsafe {
        guest::run(out, || {
            if session.is_null() {
                return Err("null session slot".to_owned());
            }
            session.write(guest::open(policy(), abi::bytes(input, len))?);
            Ok(Vec::new())
        })
    }
}

unsafe extern "C" fn place(session: *mut c_void, input: *const u8, len: usize, out: *mut ByteBuffer) -> i32 {
    let mut bad_status = false;
    // SAFETY: the host passes a live session handle, used by one thread at a time, and valid buffers.
    let status = unsafe {
        guest::run(out, || {
            let session = guest::session(session)?;
            let request = guest::decode_request(abi::bytes(input, len))?;
            bad_status = request.name == BAD_STATUS;
            match misbehave(session, &request) {
                Some(output) => output,
                None => guest::place_request(session, &request),
            }
        })
    };
    if bad_status { 42 } else { status }
}

fn misbehave(session: &mut dyn Session, request: &WorkloadRequest) -> Option<Result<Vec<u8>, String>> {
    let chosen = |host_id: String| {
        let placed = PlaceOutput::Placed(Placement {
            host_name: host_id.clone(),
            host_id,
            score: 0,
            feasible_hosts: 1,
        });
        Some(serde_json::to_vec(&placed).map_err(|error| error.to_string()))
    };
    match request.name.as_str() {
        PANIC => panic!("panic requested by workload {}", request.name),
        ERROR => Some(Err("error requested".to_owned())),
        GARBAGE => Some(Ok(b"\xffnot json".to_vec())),
        UNKNOWN_HOST => chosen("no-such-host".to_owned()),
        INFEASIBLE_HOST => {
            let snapshot = session.snapshot();
            let cx = Context::new(snapshot, request).ok()?;
            let host = snapshot
                .hosts()
                .iter()
                .find(|host| cx.check_standard(host).is_err())?;
            chosen(host.id.clone())
        }
        BAD_STATUS => Some(Ok(Vec::new())),
        _ => None,
    }
}

unsafe extern "C" fn apply(session: *mut c_void, input: *const u8, len: usize, out: *mut ByteBuffer) -> i32 {
    // SAFETY: as for `place`.
    unsafe {
        guest::run(out, || {
            guest::apply(guest::session(session)?, abi::bytes(input, len))
        })
    }
}

unsafe extern "C" fn close_session(session: *mut c_void) {
    // SAFETY: the host closes each handle once and does not use it afterwards.
    unsafe { guest::close(session) }
}
