//! An example native scheduling plugin, `example-spread`: the placement rule of the built-in `spread` policy
//! (fewest replicas of the workload's replica set, then fewest workloads), exported through Weft's C ABI.
//!
//! Use it as a template: implement a [`Pipeline`] (or any [`weft_scheduler_api::Policy`]), keep a static
//! [`PluginApiV1`] table, export `weft_scheduler_plugin_v1`, and wrap every export body in [`guest::run`] so no
//! panic crosses the boundary. Build with `cargo build --release -p weft-scheduler-example-plugin`, then
//! point the operator at `target/release/libweft_scheduler_example_plugin.so`.

use std::ffi::{CStr, c_void};
use std::panic::catch_unwind;
use std::sync::OnceLock;

use weft_scheduler_api::abi::{self, ByteBuffer, HostApiV1, PluginApiV1, guest, log_level};
use weft_scheduler_api::{Context, HostInfo, Pipeline, Scorer};

/// The policy name workloads select with `schedulerName: example-spread`.
pub const NAME: &CStr = c"example-spread";

/// Fewer replicas of the set first, then fewer workloads: one score, `-replicas · 2^32 - workloads`.
struct SpreadScore;

impl Scorer for SpreadScore {
    fn name(&self) -> &str {
        "example-spread"
    }

    fn score(&self, cx: &Context<'_>, host: &HostInfo) -> i64 {
        let cap = |count: u64| count.min(u64::from(u32::MAX)) as i64;
        let replicas = cap(host.replicas_of(cx.request().replica_set.as_deref()));
        (-replicas)
            .saturating_mul(1 << 32)
            .saturating_add(-cap(host.workload_count))
    }
}

/// The plugin's policy, also usable in-process.
pub fn policy() -> &'static Pipeline {
    static POLICY: OnceLock<Pipeline> = OnceLock::new();
    POLICY.get_or_init(|| {
        Pipeline::builder(NAME.to_str().expect("the name is UTF-8"))
            .scorer(1, SpreadScore)
            .build()
    })
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

/// The entry point the operator looks up.
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
            let handle = guest::open(policy(), abi::bytes(input, len))?;
            session.write(handle);
            guest::log(log_level::DEBUG, "example-spread: session opened");
            Ok(Vec::new())
        })
    }
}

unsafe extern "C" fn place(session: *mut c_void, input: *const u8, len: usize, out: *mut ByteBuffer) -> i32 {
    // SAFETY: the host passes a live session handle, used by one thread at a time, and valid buffers.
    unsafe {
        guest::run(out, || {
            let session = guest::session(session)?;
            guest::place(session, abi::bytes(input, len))
        })
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
