//! A plugin with a well-formed v1 header whose `place` function is null.
#![allow(dead_code)]

use std::ffi::{c_char, c_void};

type Function = Option<unsafe extern "C" fn()>;

unsafe extern "C" fn noop() {}

#[repr(C)]
pub struct Table {
    abi_major: u16,
    abi_minor: u16,
    struct_size: u32,
    name: *const c_char,
    free_buffer: Function,
    open_session: Function,
    place: Function,
    apply: Function,
    close_session: Function,
}

unsafe impl Sync for Table {}

static TABLE: Table = Table {
    abi_major: 1,
    abi_minor: 0,
    struct_size: size_of::<Table>() as u32,
    name: c"null-function".as_ptr(),
    free_buffer: Some(noop),
    open_session: Some(noop),
    place: None,
    apply: Some(noop),
    close_session: Some(noop),
};

#[unsafe(no_mangle)]
pub extern "C" fn weft_scheduler_plugin_v1(_host: *const c_void) -> *const Table {
    &TABLE
}
