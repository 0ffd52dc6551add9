//! A plugin for a future ABI: it exports only `weft_scheduler_plugin_v2`, so a v1 loader finds no entry.

use std::ffi::c_void;

#[unsafe(no_mangle)]
pub extern "C" fn weft_scheduler_plugin_v2(_host: *const c_void) -> *const c_void {
    std::ptr::null()
}
