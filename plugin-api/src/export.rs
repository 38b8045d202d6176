//! The plumbing behind [`export_plugin!`](crate::export_plugin): the fenced adapter from
//! [`Plugin`] to the instance vtable, the root module, and log forwarding.

use std::{
    any::Any,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{Arc, OnceLock},
};

use abi_stable::{
    library::{CheckTypeLayout, LibHeader, RootModuleResult},
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{ROption, RResult, RStr, RString, RVec},
};
use parking_lot::RwLock;

use crate::{
    abi::{HostContextBox, PluginInstanceBox, PluginInstance_TO, PluginMod, PluginModRef},
    context::Context,
    error::{ErrorKind, PluginError, PluginResult},
    payload::Payload,
    plugin::Plugin,
    register::{Registrar, Table},
    types::{CommandRequest, Event, HookOutcome, Message, MiddlewareAction},
    API_VERSION,
};

/// Build facts about the plugin crate, captured by the export macro in the plugin's own crate.
#[doc(hidden)]
pub trait BuildInfo: 'static {
    /// `CARGO_PKG_VERSION` of the plugin crate.
    const VERSION: &'static str;
    /// `CARGO_PKG_DESCRIPTION` of the plugin crate.
    const DESCRIPTION: &'static str;
    /// `cfg!(panic = "unwind")` in the plugin crate.
    const PANIC_UNWINDS: bool;
}

/// Turns a caught panic into a boundary error.
fn panic_error(what: &str, panic: Box<dyn Any + Send>) -> PluginError {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    PluginError::new(ErrorKind::Panicked, format!("panicked in {what}: {detail}"))
}

/// Runs plugin code so that neither a panic nor an error can unwind across the boundary.
/// `what` names the entry point in the error; it is only built if the code panicked.
pub(crate) fn fence<W: std::fmt::Display, R>(
    what: impl FnOnce() -> W,
    f: impl FnOnce() -> PluginResult<R>,
) -> RResult<R, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.into(),
        Err(panic) => RResult::RErr(panic_error(&what().to_string(), panic)),
    }
}

/// The manifest with build facts filled in.
fn full_manifest<T: Plugin, B: BuildInfo>() -> crate::Manifest {
    let mut manifest = Registrar::<T>::of().extend(T::manifest());
    if manifest.version.is_empty() {
        manifest.version = B::VERSION.to_owned();
    }
    if manifest.description.is_empty() {
        manifest.description = B::DESCRIPTION.to_owned();
    }
    manifest.api_version = API_VERSION.to_owned();
    manifest
}

extern "C" fn manifest_entry<T: Plugin, B: BuildInfo>() -> RResult<RString, PluginError> {
    fence(
        || "manifest",
        || {
            full_manifest::<T, B>()
                .to_json()
                .map(RString::from)
                .map_err(|e| PluginError::new(ErrorKind::Codec, format!("manifest encode: {e}")))
        },
    )
}

/// `(major, minor)` of a version string (`1.0`, `1.1.0`); unreadable parts count as 0.
fn major_minor(version: &str) -> (u64, u64) {
    let mut parts = version
        .split('.')
        .map(|p| p.trim().parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Refuses a host whose plugin-api is older than this plugin's (same major, lower minor).
///
/// abi_stable's own check compares only the major version, so a 1.0 host would accept this
/// library and hand it a context vtable without the entries added since. The host's version
/// comes from an entry added in 1.1 whose default body answers `1.0` when the host's vtable
/// lacks it: asking never panics.
fn check_host(context: &HostContextBox) -> PluginResult<()> {
    let host = context.host_api_version().into_string();
    if major_minor(&host) < major_minor(API_VERSION) {
        return Err(PluginError::new(
            ErrorKind::Unsupported,
            format!(
                "plugin {} needs plugin-api {API_VERSION}, the host provides {host}: update the host or build the plugin against plugin-api {host}",
                context.plugin_name()
            ),
        ));
    }
    Ok(())
}

extern "C" fn instantiate_dynamic<T: Plugin + Default>(
    context: HostContextBox,
) -> RResult<PluginInstanceBox, PluginError> {
    fence(
        || "instantiate",
        || {
            check_host(&context)?;
            let context = Arc::new(Context::new(context));
            install_log_forwarding(&context);
            let plugin = T::default();
            Ok(PluginInstance_TO::from_value(
                Adapter::new(plugin, context, Registrar::<T>::of().into_table()),
                TD_Opaque,
            ))
        },
    )
}

extern "C" fn instantiate_static<T: Plugin + Default>(
    context: HostContextBox,
) -> RResult<PluginInstanceBox, PluginError> {
    // A plugin compiled into the host shares the host's `log` statics: nothing to forward.
    fence(
        || "instantiate",
        || {
            check_host(&context)?;
            let context = Arc::new(Context::new(context));
            let plugin = T::default();
            Ok(PluginInstance_TO::from_value(
                Adapter::new(plugin, context, Registrar::<T>::of().into_table()),
                TD_Opaque,
            ))
        },
    )
}

fn root_module<T: Plugin + Default, B: BuildInfo>(dynamic: bool) -> PluginModRef {
    PluginMod {
        panic_unwinds: B::PANIC_UNWINDS,
        manifest: manifest_entry::<T, B>,
        instantiate: if dynamic {
            instantiate_dynamic::<T>
        } else {
            instantiate_static::<T>
        },
    }
    .leak_into_prefix()
}

fn dynamic_root_module<T: Plugin + Default, B: BuildInfo>() -> PluginModRef {
    root_module::<T, B>(true)
}

extern "C" fn root_module_loader<T: Plugin + Default, B: BuildInfo>() -> RootModuleResult {
    abi_stable::library::__call_root_module_loader(dynamic_root_module::<T, B>)
}

/// The library header a plugin exports (used by [`export_plugin!`](crate::export_plugin)).
#[doc(hidden)]
#[allow(
    unsafe_code,
    reason = "abi_stable's library header constructor is unsafe"
)]
pub const fn lib_header<T: Plugin + Default, B: BuildInfo>() -> LibHeader {
    // SAFETY: the constructor returns a `PluginModRef`, the module type named here, so the
    // erased prefix it produces is the one `from_constructor` expects.
    unsafe {
        LibHeader::from_constructor::<PluginModRef>(
            root_module_loader::<T, B>,
            CheckTypeLayout::Yes,
        )
    }
}

/// The root module of a plugin compiled into the host (see
/// [`static_plugin!`](crate::static_plugin)): the same entry points as a dynamic plugin, without
/// dlopen and without log forwarding.
#[doc(hidden)]
pub fn static_root_module<T: Plugin + Default, B: BuildInfo>() -> PluginModRef {
    root_module::<T, B>(false)
}

/// The plugin wrapped for the instance vtable; every method is fenced.
///
/// `deactivate` ends the instance: after it returns, the plugin value is dropped inside the
/// fence, so a panic in its `Drop` comes back to the host as `deactivate`'s error ("panicked
/// while being dropped") instead of aborting the process. An instance dropped without
/// `deactivate` (its activation failed) drops the value inside a fence too, and only logs.
struct Adapter<T> {
    plugin: Option<T>,
    context: Arc<Context>,
    /// What the plugin registered ([`Plugin::register`]), dispatched before its string-based
    /// methods.
    table: Table<T>,
}

/// The plugin value, unless `deactivate` already ended it.
fn live<T>(plugin: &mut Option<T>) -> PluginResult<&mut T> {
    plugin.as_mut().ok_or_else(|| {
        PluginError::new(
            ErrorKind::Cancelled,
            "this plugin instance was deactivated and takes no more calls",
        )
    })
}

impl<T> Adapter<T> {
    fn new(plugin: T, context: Arc<Context>, table: Table<T>) -> Self {
        Adapter {
            plugin: Some(plugin),
            context,
            table,
        }
    }

    /// Drops the plugin value inside a fence.
    fn end(&mut self) -> PluginResult<()> {
        let Some(plugin) = self.plugin.take() else {
            return Ok(());
        };
        catch_unwind(AssertUnwindSafe(move || drop(plugin)))
            .map_err(|panic| panic_error("drop", panic))
            .map_err(|e| {
                PluginError::new(
                    ErrorKind::Panicked,
                    format!("panicked while being dropped: {}", e.message()),
                )
            })
    }
}

impl<T> Drop for Adapter<T> {
    fn drop(&mut self) {
        if let Err(e) = self.end() {
            log::error!("{e}");
        }
    }
}

impl<T: Plugin> crate::abi::PluginInstance for Adapter<T> {
    fn activate(&mut self) -> RResult<(), PluginError> {
        fence(
            || "activate",
            || live(&mut self.plugin)?.activate(&self.context),
        )
    }

    fn deactivate(&mut self) -> RResult<(), PluginError> {
        self.context.dynamic.close();
        let deactivated = fence(
            || "deactivate",
            || live(&mut self.plugin)?.deactivate(&self.context),
        );
        let ended = self.end();
        match (deactivated.into_result(), ended) {
            (Ok(()), Ok(())) => RResult::ROk(()),
            (Err(e), _) | (Ok(()), Err(e)) => RResult::RErr(e),
        }
    }

    fn handle_command(
        &mut self,
        command: RStr<'_>,
        args: &Payload,
    ) -> RResult<Payload, PluginError> {
        fence(
            || format!("handle_command {command}"),
            || {
                let plugin = live(&mut self.plugin)?;
                let command = command.as_str();
                if let Some(answer) = self.table.command(plugin, &self.context, command, args) {
                    return answer;
                }
                match self.context.dynamic.command(command) {
                    Some(handler) => handler(&self.context, args),
                    None => plugin.handle_command(&self.context, command, args),
                }
            },
        )
    }

    fn on_event(&mut self, event: &Event) -> RResult<ROption<Payload>, PluginError> {
        fence(
            || "on_event",
            || {
                let plugin = live(&mut self.plugin)?;
                match self.table.event(plugin, &self.context, event) {
                    Some(answer) => answer,
                    None => plugin.on_event(&self.context, event),
                }
                .map(ROption::from)
            },
        )
    }

    fn on_message(&mut self, message: &Message) -> RResult<ROption<Payload>, PluginError> {
        if message.method.is_empty() {
            fence(
                || "on_message",
                || {
                    let plugin = live(&mut self.plugin)?;
                    match self.table.message(plugin, &self.context, message) {
                        Some(answer) => answer,
                        None => plugin.on_message(&self.context, message),
                    }
                    .map(ROption::from)
                },
            )
        } else {
            fence(
                || format!("on_call {}", message.method),
                || {
                    let plugin = live(&mut self.plugin)?;
                    let method = message.method.as_str();
                    match self
                        .table
                        .rpc(plugin, &self.context, method, &message.payload)
                    {
                        Some(answer) => answer,
                        None => plugin.on_call(&self.context, method, &message.payload),
                    }
                    .map(ROption::RSome)
                },
            )
        }
    }

    fn on_hook(&mut self, hook: RStr<'_>, data: &Payload) -> RResult<HookOutcome, PluginError> {
        fence(
            || format!("on_hook {hook}"),
            || {
                let plugin = live(&mut self.plugin)?;
                if let Some(outcome) = self.table.hook(plugin, &self.context, hook.as_str(), data) {
                    return outcome;
                }
                match self.context.dynamic.hook(hook.as_str()) {
                    Some(handler) => handler(&self.context, data),
                    None => plugin.on_hook(&self.context, hook.as_str(), data),
                }
            },
        )
    }

    fn before_command(
        &mut self,
        request: &CommandRequest,
    ) -> RResult<MiddlewareAction, PluginError> {
        fence(
            || "before_command",
            || live(&mut self.plugin)?.before_command(&self.context, request),
        )
    }

    fn after_command(
        &mut self,
        request: &CommandRequest,
        result: RResult<Payload, PluginError>,
    ) -> RResult<Payload, PluginError> {
        fence(
            || "after_command",
            || live(&mut self.plugin)?.after_command(&self.context, request, result.into_result()),
        )
    }

    fn provide(
        &mut self,
        provider: RStr<'_>,
        method: RStr<'_>,
        args: &Payload,
    ) -> RResult<Payload, PluginError> {
        fence(
            || format!("provide {provider}.{method}"),
            || {
                let plugin = live(&mut self.plugin)?;
                let (provider, method) = (provider.as_str(), method.as_str());
                if let Some(answer) =
                    self.table
                        .provide(plugin, &self.context, (provider, method), args)
                {
                    return answer;
                }
                match self.context.dynamic.provider_method(provider, method) {
                    Some(Some(handler)) => handler(&self.context, args),
                    Some(None) => Err(PluginError::not_found(format!(
                        "provider {provider} has no method {method}"
                    ))),
                    None => plugin.provide(&self.context, provider, method, args),
                }
            },
        )
    }

    fn save_state(&mut self) -> RResult<ROption<RVec<u8>>, PluginError> {
        fence(
            || "save_state",
            || {
                live(&mut self.plugin)?
                    .save_state(&self.context)
                    .map(|s| s.map(RVec::from).into())
            },
        )
    }

    fn restore_state(
        &mut self,
        state: RVec<u8>,
        from_version: RStr<'_>,
    ) -> RResult<(), PluginError> {
        fence(
            || "restore_state",
            || live(&mut self.plugin)?.restore_state(&self.context, &state, from_version.as_str()),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Log forwarding: the plugin has its own copy of the `log` crate's statics, so its macros would
// go nowhere. Each library installs one forwarding logger that hands records to the host, which
// logs them with the plugin's name as target.

static FORWARD_TO: OnceLock<RwLock<Option<Arc<Context>>>> = OnceLock::new();

struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Some(slot) = FORWARD_TO.get() else { return };
        if let Some(ctx) = slot.read().as_ref() {
            let text = record.args().to_string();
            ctx.raw().log(record.level() as u8, RStr::from_str(&text));
        }
    }

    fn flush(&self) {}
}

fn level_filter(raw: u8) -> log::LevelFilter {
    match raw {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        4 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

fn install_log_forwarding(context: &Arc<Context>) {
    let slot = FORWARD_TO.get_or_init(|| RwLock::new(None));
    *slot.write() = Some(Arc::clone(context));
    // Fails only if this library already installed it, which is fine.
    let _ = log::set_logger(&HostLogger);
    log::set_max_level(level_filter(context.raw().log_max_level()));
    // The library has its own copy of std, hence its own panic hook. Every panic in plugin code
    // is caught by the fence and reported to the caller; the hook says where it happened on
    // stderr, one line, as the default hook does — but never resolves a backtrace (with
    // RUST_BACKTRACE set that takes seconds in a debug build and holds up the plugin's thread).
    std::panic::set_hook(Box::new(|info| {
        eprintln!("plugin panic: {info}");
    }));
}

/// Exports a [`Plugin`] from a cdylib crate: generates the root module, the fenced entry points
/// and the panic-strategy marker. Use it once per plugin crate.
///
/// The type must implement [`Plugin`] and `Default`.
///
/// # Examples
/// ```
/// use plugin_api::prelude::*;
/// #[derive(Default)]
/// struct Quiet;
/// impl Plugin for Quiet {
///     fn manifest() -> Manifest { Manifest::new("quiet") }
/// }
/// export_plugin!(Quiet);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            struct __PluginBuild;
            impl $crate::__private::BuildInfo for __PluginBuild {
                const VERSION: &'static str = env!("CARGO_PKG_VERSION");
                const DESCRIPTION: &'static str = env!("CARGO_PKG_DESCRIPTION");
                const PANIC_UNWINDS: bool = cfg!(panic = "unwind");
            }

            #[no_mangle]
            pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader =
                $crate::__private::lib_header::<$plugin, __PluginBuild>();
        };
    };
}

/// The root module of a plugin compiled into the host, for
/// [`Host::register_static`](https://docs.rs/loader) style registration: same entry points as the
/// exported library, no dlopen.
///
/// # Examples
/// ```
/// use plugin_api::prelude::*;
/// #[derive(Default)]
/// struct Builtin;
/// impl Plugin for Builtin {
///     fn manifest() -> Manifest { Manifest::new("builtin") }
/// }
/// let module = plugin_api::static_plugin!(Builtin);
/// assert!(module.panic_unwinds());
/// ```
#[macro_export]
macro_rules! static_plugin {
    ($plugin:ty) => {{
        struct __PluginBuild;
        impl $crate::__private::BuildInfo for __PluginBuild {
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
            const DESCRIPTION: &'static str = env!("CARGO_PKG_DESCRIPTION");
            const PANIC_UNWINDS: bool = cfg!(panic = "unwind");
        }
        $crate::__private::static_root_module::<$plugin, __PluginBuild>()
    }};
}

#[cfg(test)]
mod tests {
    use super::major_minor;

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert_eq!(major_minor("1.0"), (1, 0));
        assert_eq!(major_minor("1.1.0"), (1, 1));
        assert!(major_minor("1.0") < major_minor("1.1.0"));
        assert!(major_minor("1.1.7") >= major_minor("1.1.0"));
        assert_eq!(major_minor("garbage"), (0, 0));
    }
}
