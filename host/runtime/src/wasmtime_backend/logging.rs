//! `wasi:logging/logging` (`@0.1.0-draft`, and the unversioned package some toolchains emit): a
//! component's messages become host `tracing` events carrying the workload's identity and the
//! component's name, in the target `weft_component`.

use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Lift, Linker};

use super::state::InstanceState;

/// `wasi:logging/logging.level`.
#[derive(ComponentType, Lift, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
#[allow(dead_code)] // variants are made by lifting the guest's value
pub(crate) enum Level {
    #[component(name = "trace")]
    Trace,
    #[component(name = "debug")]
    Debug,
    #[component(name = "info")]
    Info,
    #[component(name = "warn")]
    Warn,
    #[component(name = "error")]
    Error,
    #[component(name = "critical")]
    Critical,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Critical => "critical",
        }
    }
}

/// Interface names served.
const LOGGING: [&str; 2] = ["wasi:logging/logging@0.1.0-draft", "wasi:logging/logging"];

/// Longest message logged as is; longer ones are cut (a component cannot flood the host's log lines).
const MAX_MESSAGE: usize = 16 * 1024;

/// Adds `wasi:logging/logging` to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    for name in LOGGING {
        linker.instance(name)?.func_wrap(
            "log",
            |ctx: StoreContextMut<'_, InstanceState>,
             (level, context, message): (Level, String, String)|
             -> wasmtime::Result<()> {
                log(ctx.data(), level, &context, &message);
                Ok(())
            },
        )?;
    }
    Ok(())
}

fn log(state: &InstanceState, level: Level, context: &str, message: &str) {
    state.metrics.count_log(level.as_str());
    let message = truncate(message, MAX_MESSAGE);
    let identity = &state.identity;
    let component = identity
        .components
        .get(state.current_component)
        .map(String::as_str)
        .unwrap_or("");
    macro_rules! emit {
        ($level:ident) => {
            tracing::$level!(
                target: "weft_component",
                workload = %identity.id,
                namespace = %identity.namespace,
                name = %identity.name,
                component,
                context,
                level = level.as_str(),
                "{message}"
            )
        };
    }
    match level {
        Level::Trace => emit!(trace),
        Level::Debug => emit!(debug),
        Level::Info => emit!(info),
        Level::Warn => emit!(warn),
        Level::Error | Level::Critical => emit!(error),
    }
}

fn truncate(message: &str, max: usize) -> &str {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("abcdef", 4), "abcd");
    }
}
