//! A plugin built for ABI major 2 that still exports the v1 symbol: the loader must refuse its table.
#![allow(dead_code)]

use std::ffi::{c_char, c_void};

#[repr(C)]
pub struct Table {
    abi_major: u16,
    abi_minor: u16,
    struct_size: u32,
    name: *const c_char,
    functions: [Option<unsafe extern "C" fn()>; 5],
}

unsafe impl Sync for Table {}

static TABLE: Table = Table {
    abi_major: 2,
    abi_minor: 0,
    struct_size: size_of::<Table>() as u32,
    name: c"wrong-major".as_ptr(),
    functions: [None; 5],
};

#[unsafe(no_mangle)]
pub extern "C" fn weft_scheduler_plugin_v1(_host: *const c_void) -> *const Table {
    &TABLE
}
