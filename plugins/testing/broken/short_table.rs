//! A plugin whose table is only the header and the name: the loader must refuse it for being too small
//! before reading any function pointer.
#![allow(dead_code)]

use std::ffi::{c_char, c_void};

#[repr(C)]
pub struct Table {
    abi_major: u16,
    abi_minor: u16,
    struct_size: u32,
    name: *const c_char,
}

unsafe impl Sync for Table {}

static TABLE: Table = Table {
    abi_major: 1,
    abi_minor: 0,
    struct_size: size_of::<Table>() as u32,
    name: c"short-table".as_ptr(),
};

#[unsafe(no_mangle)]
pub extern "C" fn weft_scheduler_plugin_v1(_host: *const c_void) -> *const Table {
    &TABLE
}
