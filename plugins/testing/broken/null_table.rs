//! A plugin whose entry point fails: it returns no table.

use std::ffi::c_void;

#[unsafe(no_mangle)]
pub extern "C" fn weft_scheduler_plugin_v1(_host: *const c_void) -> *const c_void {
    std::ptr::null()
}
