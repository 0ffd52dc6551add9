//! Loads native scheduling plugins: `cdylib`s implementing Weft's versioned C ABI
//! ([`weft_scheduler_api::abi`]), loaded with libloading.
//!
//! [`NativePlugin::load`] checks the entry symbol, the table's ABI major and size, the policy name and every
//! function before accepting a plugin, and turns each failure into a [`LoadError`] that names the file and
//! what is wrong. A loaded plugin is a [`Policy`]: its sessions ([`NativeSession`]) keep a copy of the
//! snapshot, so the host a plugin picks is re-checked against the standard filters (a host lacking a
//! required interface is never used, whatever the plugin says), and every plugin failure (error, caught
//! panic, unreadable output, a host it may not pick) becomes a [`ScheduleError::Plugin`]. After a failure
//! that may have left the plugin's session out of step, the session is closed and reopened from the copy.
//!
//! Plugins are never unloaded: unloading is unsound with thread-local destructors or stray function pointers,
//! and a no-op on musl.

use std::ffi::{CStr, c_void};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libloading::Library;
use serde::Serialize;
use sha2::{Digest, Sha256};
use weft_scheduler_api::abi::{
    self, ABI_MAJOR, ABI_MINOR, ByteBuffer, CloseSessionFn, EntryV1, FreeBufferFn, HostApiV1, OpenSessionFn,
    PLUGIN_API_V1_SIZE, PlaceOutput, PluginApiV1, SessionCallFn, log_level, status,
};
use weft_scheduler_api::{
    Context, Placement, PluginFailure, Policy, ScheduleError, Session, Snapshot, SnapshotUpdate,
    WorkloadRequest,
};

/// Plugin messages longer than this many bytes are cut, to keep Workload conditions readable.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Highest ABI major probed for when a plugin lacks the v1 entry, to say which ABI it was built for.
const PROBED_MAJORS: u16 = 16;

/// Why a plugin was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read (for its checksum).
    #[error("cannot read scheduling plugin {}: {source}", .path.display())]
    Read {
        /// The plugin file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file's SHA-256 is not the expected one.
    #[error("scheduling plugin {} has SHA-256 {actual}, expected {expected}", .path.display())]
    Checksum {
        /// The plugin file.
        path: PathBuf,
        /// The expected digest (hex).
        expected: String,
        /// The file's digest (hex).
        actual: String,
    },
    /// The dynamic loader refused the file (missing, not a library, unresolved dependencies...).
    #[error("cannot load scheduling plugin {}: {reason}", .path.display())]
    Open {
        /// The plugin file.
        path: PathBuf,
        /// The loader's error with its causes, e.g. `dlopen failed: <file>: cannot open shared object file`.
        reason: String,
    },
    /// The library has no `weft_scheduler_plugin_v1` symbol.
    #[error(
        "{} is not a Weft scheduling plugin for ABI {ABI_MAJOR}: it does not export `{}`{hint}",
        .path.display(), abi::ENTRY_SYMBOL.to_string_lossy()
    )]
    MissingEntry {
        /// The plugin file.
        path: PathBuf,
        /// Which other ABI majors it exports, if any.
        hint: String,
    },
    /// The entry point returned null.
    #[error("scheduling plugin {}: its entry point returned no API table", .path.display())]
    NullTable {
        /// The plugin file.
        path: PathBuf,
    },
    /// The table pointer is not aligned for the table type.
    #[error("scheduling plugin {}: its API table is misaligned", .path.display())]
    MisalignedTable {
        /// The plugin file.
        path: PathBuf,
    },
    /// The table is for another ABI major.
    #[error(
        "scheduling plugin {} implements ABI {found_major}.{found_minor}; this operator supports ABI \
         {ABI_MAJOR}.x (up to {ABI_MAJOR}.{ABI_MINOR})",
        .path.display()
    )]
    AbiMajor {
        /// The plugin file.
        path: PathBuf,
        /// The table's major.
        found_major: u16,
        /// The table's minor.
        found_minor: u16,
    },
    /// The table is smaller than ABI 1.0's.
    #[error(
        "scheduling plugin {}: its API table is {found} bytes, ABI {ABI_MAJOR} needs at least {required}",
        .path.display()
    )]
    TableTooSmall {
        /// The plugin file.
        path: PathBuf,
        /// The table's `struct_size`.
        found: u32,
        /// The least accepted size.
        required: usize,
    },
    /// The policy name is null, empty or not UTF-8.
    #[error("scheduling plugin {}: invalid policy name: {reason}", .path.display())]
    InvalidName {
        /// The plugin file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A function pointer in the table is null.
    #[error("scheduling plugin {}: function `{function}` is missing from its API table", .path.display())]
    MissingFunction {
        /// The plugin file.
        path: PathBuf,
        /// The table field.
        function: &'static str,
    },
}

#[derive(Clone, Copy)]
struct Functions {
    free_buffer: FreeBufferFn,
    open_session: OpenSessionFn,
    place: SessionCallFn,
    apply: SessionCallFn,
    close_session: CloseSessionFn,
}

struct Shared {
    name: String,
    path: PathBuf,
    abi_minor: u16,
    functions: Functions,
}

/// A loaded native plugin; a [`Policy`] named by the plugin. Cheap to clone.
#[derive(Clone)]
pub struct NativePlugin {
    shared: Arc<Shared>,
}

impl fmt::Debug for NativePlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativePlugin")
            .field("name", &self.shared.name)
            .field("path", &self.shared.path)
            .field("abi", &(ABI_MAJOR, self.shared.abi_minor))
            .finish()
    }
}

impl NativePlugin {
    /// Loads the plugin at `path` and checks its table.
    ///
    /// # Safety
    /// Loading runs the library's initialisers, and once the checks pass its functions are trusted to keep
    /// the ABI contract (valid buffers, no unwinding). Load only trusted files, e.g. from a root-owned
    /// directory, ideally with [`NativePlugin::load_verified`].
    pub unsafe fn load(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref().to_path_buf();
        // SAFETY: the caller vouches for the library.
        let library = unsafe { Library::new(&path) }.map_err(|error| LoadError::Open {
            path: path.clone(),
            reason: error_chain(&error),
        })?;
        // Never unloaded (see the crate docs), so symbols and the table stay valid for the process.
        let library: &'static Library = Box::leak(Box::new(library));
        // SAFETY: by the ABI contract the entry symbol has type `EntryV1`.
        let entry = match unsafe { library.get::<EntryV1>(abi::ENTRY_SYMBOL) } {
            Ok(symbol) => *symbol,
            Err(_) => {
                return Err(LoadError::MissingEntry {
                    hint: other_majors(library),
                    path,
                });
            }
        };
        let host = host_table(&path);
        // SAFETY: the entry point has the ABI's signature; the host table lives for the process.
        let table = unsafe { entry(host) };
        if table.is_null() {
            return Err(LoadError::NullTable { path });
        }
        if !table.is_aligned() {
            return Err(LoadError::MisalignedTable { path });
        }
        // SAFETY: a non-null, aligned table starts with the 8-byte header in every ABI version; nothing
        // past the header is read before `struct_size` is checked.
        let (found_major, found_minor, size) = unsafe {
            (
                (&raw const (*table).abi_major).read(),
                (&raw const (*table).abi_minor).read(),
                { (&raw const (*table).struct_size).read() },
            )
        };
        if found_major != ABI_MAJOR {
            return Err(LoadError::AbiMajor {
                path,
                found_major,
                found_minor,
            });
        }
        if (size as usize) < PLUGIN_API_V1_SIZE {
            return Err(LoadError::TableTooSmall {
                path,
                found: size,
                required: PLUGIN_API_V1_SIZE,
            });
        }
        // SAFETY: the table is at least as large as the ABI 1.0 table, and lives for the process.
        let table: &'static PluginApiV1 = unsafe { &*table };
        let name = read_name(table).map_err(|reason| LoadError::InvalidName {
            path: path.clone(),
            reason,
        })?;
        let missing = |function| LoadError::MissingFunction {
            path: path.clone(),
            function,
        };
        let functions = Functions {
            free_buffer: table.free_buffer.ok_or_else(|| missing("free_buffer"))?,
            open_session: table.open_session.ok_or_else(|| missing("open_session"))?,
            place: table.place.ok_or_else(|| missing("place"))?,
            apply: table.apply.ok_or_else(|| missing("apply"))?,
            close_session: table.close_session.ok_or_else(|| missing("close_session"))?,
        };
        tracing::info!(plugin = %name, path = %path.display(), abi_minor = found_minor, "loaded scheduling plugin");
        Ok(NativePlugin {
            shared: Arc::new(Shared {
                name,
                path,
                abi_minor: found_minor,
                functions,
            }),
        })
    }

    /// Loads the plugin at `path` if its SHA-256 is `sha256_hex`.
    ///
    /// # Safety
    /// As for [`NativePlugin::load`]; the digest guards against a wrong or corrupted file, not against the
    /// file being swapped between the check and the load, so the directory must still be trusted.
    pub unsafe fn load_verified(path: impl AsRef<Path>, sha256_hex: &str) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let actual = hex::encode(Sha256::digest(&bytes));
        let expected = sha256_hex.trim().to_ascii_lowercase();
        if actual != expected {
            return Err(LoadError::Checksum {
                path: path.to_path_buf(),
                expected,
                actual,
            });
        }
        // SAFETY: forwarded to the caller.
        unsafe { NativePlugin::load(path) }
    }

    /// The policy name the plugin declares.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The ABI version of its table, `(major, minor)`.
    pub fn abi_version(&self) -> (u16, u16) {
        (ABI_MAJOR, self.shared.abi_minor)
    }

    /// Opens a session over `snapshot` (the snapshot crosses the boundary once, here).
    pub fn open_session(&self, snapshot: Snapshot, seed: u64) -> Result<NativeSession, ScheduleError> {
        let mut session = NativeSession {
            shared: Arc::clone(&self.shared),
            handle: std::ptr::null_mut(),
            mirror: snapshot,
            seed,
            reopens: 0,
            input: Vec::new(),
        };
        session.ensure_open()?;
        Ok(session)
    }
}

impl Policy for NativePlugin {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn open(&self, snapshot: Snapshot, seed: u64) -> Result<Box<dyn Session>, ScheduleError> {
        Ok(Box::new(self.open_session(snapshot, seed)?))
    }
}

/// An error and its causes, joined with `: ` (libloading puts the system's message in the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

fn read_name(table: &PluginApiV1) -> Result<String, &'static str> {
    if table.name.is_null() {
        return Err("null");
    }
    // SAFETY: the ABI requires a NUL-terminated static string.
    let name = unsafe { CStr::from_ptr(table.name) };
    match name.to_str() {
        Ok("") => Err("empty"),
        Ok(name) => Ok(name.to_owned()),
        Err(_) => Err("not UTF-8"),
    }
}

fn other_majors(library: &Library) -> String {
    let found: Vec<String> = (1..=PROBED_MAJORS)
        .filter(|&major| major != ABI_MAJOR)
        .map(|major| format!("{}{major}", abi::ENTRY_SYMBOL_PREFIX))
        // SAFETY: only the symbol's presence is checked; the pointer is never used.
        .filter(|symbol| unsafe { library.get::<*const c_void>(symbol.as_str()) }.is_ok())
        .collect();
    if found.is_empty() {
        String::new()
    } else {
        format!(
            " (it exports `{}`, so it was built for another ABI)",
            found.join("`, `")
        )
    }
}

/// The host table handed to a plugin: logging into `tracing`, with the plugin's path as context. Leaked,
/// like the plugin.
fn host_table(path: &Path) -> &'static HostApiV1 {
    let context: &'static String = Box::leak(Box::new(path.display().to_string()));
    Box::leak(Box::new(HostApiV1 {
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        struct_size: size_of::<HostApiV1>() as u32,
        context: (context as *const String).cast(),
        log: Some(host_log),
    }))
}

unsafe extern "C" fn host_log(context: *const c_void, level: u32, message: *const u8, len: usize) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: `context` is the leaked path string from `host_table`; the message is borrowed for the call.
        let (plugin, message) = unsafe { (&*context.cast::<String>(), abi::bytes(message, len)) };
        let message = truncate(message);
        match level {
            log_level::ERROR => tracing::error!(plugin = %plugin, "{message}"),
            log_level::WARN => tracing::warn!(plugin = %plugin, "{message}"),
            log_level::INFO => tracing::info!(plugin = %plugin, "{message}"),
            log_level::DEBUG => tracing::debug!(plugin = %plugin, "{message}"),
            _ => tracing::trace!(plugin = %plugin, "{message}"),
        }
    });
}

fn truncate(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.is_empty() {
        return "(no message)".to_owned();
    }
    if text.len() <= MAX_MESSAGE_BYTES {
        return text.into_owned();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// An output buffer the plugin allocated; handed back to the plugin's `free_buffer` on drop.
struct Output {
    buffer: ByteBuffer,
    free: FreeBufferFn,
}

impl Output {
    fn bytes(&self) -> &[u8] {
        // SAFETY: the plugin wrote a valid buffer (or left it empty), alive until `free_buffer`.
        unsafe { self.buffer.as_slice() }
    }

    fn message(&self) -> String {
        truncate(self.bytes())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        let buffer = std::mem::replace(&mut self.buffer, ByteBuffer::EMPTY);
        if !buffer.ptr.is_null() {
            // SAFETY: the buffer came from this plugin and is returned once.
            unsafe { (self.free)(buffer) }
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OpenSessionRef<'a> {
    snapshot: &'a Snapshot,
    seed: u64,
}

/// A session of a native plugin. It keeps its own copy of the snapshot to validate the plugin's choices and
/// to reopen the plugin's session after a failure.
pub struct NativeSession {
    shared: Arc<Shared>,
    /// The plugin's session; null when closed (reopened on the next call).
    handle: *mut c_void,
    mirror: Snapshot,
    seed: u64,
    reopens: u64,
    input: Vec<u8>,
}

// SAFETY: by the ABI contract a plugin session may be used from any thread, one at a time; `&mut self` on
// every call guarantees one at a time.
unsafe impl Send for NativeSession {}

impl fmt::Debug for NativeSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeSession")
            .field("plugin", &self.shared.name)
            .field("open", &!self.handle.is_null())
            .field("hosts", &self.mirror.hosts().len())
            .field("reopens", &self.reopens)
            .finish()
    }
}

impl NativeSession {
    fn failure(&self, failure: PluginFailure, message: String) -> ScheduleError {
        match failure {
            PluginFailure::Panic => {
                tracing::error!(plugin = %self.shared.name, %message, "scheduling plugin panicked")
            }
            _ => tracing::warn!(plugin = %self.shared.name, %failure, %message, "scheduling plugin failed"),
        }
        ScheduleError::Plugin {
            plugin: self.shared.name.clone(),
            failure,
            message,
        }
    }

    /// Runs one plugin call with a fresh output buffer.
    fn call(&self, body: impl FnOnce(*mut ByteBuffer) -> i32) -> (i32, Output) {
        let mut buffer = ByteBuffer::EMPTY;
        let code = body(&mut buffer);
        (
            code,
            Output {
                buffer,
                free: self.shared.functions.free_buffer,
            },
        )
    }

    /// Turns a non-OK status into an error.
    fn status_error(&self, call: &str, code: i32, output: &Output) -> ScheduleError {
        match code {
            status::ERROR => self.failure(PluginFailure::Error, output.message()),
            status::PANIC => self.failure(PluginFailure::Panic, output.message()),
            other => self.failure(
                PluginFailure::InvalidOutput,
                format!("{call} returned unknown status {other}"),
            ),
        }
    }

    fn ensure_open(&mut self) -> Result<*mut c_void, ScheduleError> {
        if !self.handle.is_null() {
            return Ok(self.handle);
        }
        let seed = self.seed.wrapping_add(self.reopens);
        let mut input = std::mem::take(&mut self.input);
        input.clear();
        serde_json::to_writer(
            &mut input,
            &OpenSessionRef {
                snapshot: &self.mirror,
                seed,
            },
        )
        .expect("a snapshot always encodes");
        let mut handle = std::ptr::null_mut();
        let open = self.shared.functions.open_session;
        // SAFETY: valid input, handle slot and output buffer, per the ABI.
        let (code, output) = self.call(|out| unsafe { open(input.as_ptr(), input.len(), &mut handle, out) });
        self.input = input;
        if code != status::OK {
            return Err(self.status_error("open_session", code, &output));
        }
        if handle.is_null() {
            let message = "open_session returned no session handle".to_owned();
            return Err(self.failure(PluginFailure::InvalidOutput, message));
        }
        self.handle = handle;
        Ok(handle)
    }

    /// Closes the plugin's session; the next call reopens it from the snapshot copy.
    fn reset(&mut self) {
        if !self.handle.is_null() {
            let close = self.shared.functions.close_session;
            // SAFETY: a live handle, closed once.
            unsafe { close(self.handle) };
            self.handle = std::ptr::null_mut();
            self.reopens += 1;
        }
    }

    /// Checks a plugin's choice: a host in the snapshot that passes the standard filters.
    fn validate(&self, request: &WorkloadRequest, mut placement: Placement) -> Result<Placement, String> {
        let Some(host) = self.mirror.host(&placement.host_id) else {
            return Err(format!(
                "it chose host {:?}, which is not in the snapshot",
                placement.host_id
            ));
        };
        let cx = Context::new(&self.mirror, request)
            .map_err(|error| format!("it placed a workload that cannot be placed: {error}"))?;
        if let Err(rejection) = cx.check_standard(host) {
            let why = cx.explain(host, &rejection);
            return Err(format!(
                "it chose host {} ({}), which fails the {} filter: {}",
                host.name, host.id, why.filter, why.detail
            ));
        }
        placement.host_name.clone_from(&host.name);
        Ok(placement)
    }

    fn send_updates(&mut self, updates: &[SnapshotUpdate]) -> Result<(), ScheduleError> {
        let mut input = std::mem::take(&mut self.input);
        input.clear();
        serde_json::to_writer(&mut input, updates).expect("updates always encode");
        let (handle, apply) = (self.handle, self.shared.functions.apply);
        // SAFETY: a live handle and valid buffers, per the ABI.
        let (code, output) = self.call(|out| unsafe { apply(handle, input.as_ptr(), input.len(), out) });
        self.input = input;
        if code == status::OK {
            Ok(())
        } else {
            Err(self.status_error("apply", code, &output))
        }
    }
}

impl Session for NativeSession {
    fn place(&mut self, request: &WorkloadRequest) -> Result<Placement, ScheduleError> {
        let handle = self.ensure_open()?;
        let mut input = std::mem::take(&mut self.input);
        input.clear();
        serde_json::to_writer(&mut input, request).expect("a request always encodes");
        let place = self.shared.functions.place;
        // SAFETY: a live handle and valid buffers, per the ABI.
        let (code, output) = self.call(|out| unsafe { place(handle, input.as_ptr(), input.len(), out) });
        self.input = input;
        if code != status::OK {
            let error = self.status_error("place", code, &output);
            drop(output);
            // An error leaves the session as it was; after a panic or an unknown status, start afresh.
            if code != status::ERROR {
                self.reset();
            }
            return Err(error);
        }
        let parsed = serde_json::from_slice::<PlaceOutput>(output.bytes());
        drop(output);
        let outcome = match parsed {
            Ok(PlaceOutput::Failed(error)) => return Err(error),
            Ok(PlaceOutput::Placed(placement)) => self.validate(request, placement),
            Err(error) => Err(format!("place output does not follow the ABI schema: {error}")),
        };
        match outcome {
            Ok(placement) => {
                self.mirror
                    .assume(&placement.host_id, &request.footprint())
                    .expect("a validated host is in the snapshot");
                Ok(placement)
            }
            Err(message) => {
                // The plugin may have counted a placement we refuse: resynchronise it.
                self.reset();
                Err(self.failure(PluginFailure::InvalidOutput, message))
            }
        }
    }

    fn apply(&mut self, updates: &[SnapshotUpdate]) -> Result<(), ScheduleError> {
        let (applied, result) = self.mirror.apply_all(updates);
        if applied > 0
            && !self.handle.is_null()
            && let Err(error) = self.send_updates(&updates[..applied])
        {
            // The copy is right; the plugin's session is rebuilt from it on the next call.
            self.reset();
            return Err(error);
        }
        result.map_err(ScheduleError::Snapshot)
    }

    fn snapshot(&self) -> &Snapshot {
        &self.mirror
    }
}

impl Drop for NativeSession {
    fn drop(&mut self) {
        self.reset();
    }
}
