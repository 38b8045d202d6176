//! Commands, through the middleware chain: each middleware's `before` in priority order, the
//! command (routed again if a middleware renamed it), then each entered middleware's `after` in
//! reverse.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use plugin_api::{CommandRequest, ErrorKind, MiddlewareAction, Payload, PluginError};

use super::{routes::Route, Caller, Dispatcher};
use crate::{
    observe::recorder::{Label, RecordKind},
    runtime::{
        call::{mismatch, Answer, Call},
        slot::Slot,
    },
};

impl Dispatcher {
    /// Runs a command through the middleware chain.
    pub(crate) fn execute(
        &self,
        caller: &Caller<'_>,
        command: &str,
        args: Payload,
        timeout: Option<Duration>,
    ) -> Result<Payload, PluginError> {
        self.check_size(command, &args)?;
        if caller.granted.is_some() {
            caller.require(&format!("call:{command}"))?;
        }
        let timeout = self.timeout(timeout);
        let now = Instant::now();
        let deadline = now + timeout;
        let (route, middleware) = {
            let routes = self.routes.read();
            let route = routes.commands.get(command).cloned();
            let mw: Vec<Arc<Slot>> = if route.is_some() {
                routes
                    .middleware
                    .iter()
                    .filter(|m| !caller.chain.contains(&m.slot.name))
                    .map(|m| m.slot.clone())
                    .collect()
            } else {
                Vec::new()
            };
            (route, mw)
        };
        let Some(route) = route else {
            // A plugin waiting on this call (during its own activate, say) cannot serve it
            // either: that is a cycle, whether or not the command is registered yet.
            if let Some((plugin, _)) = command.split_once(':') {
                caller.cycle_to(plugin)?;
                if let Some(quarantined) = self.quarantined(plugin) {
                    return Err(quarantined);
                }
            }
            return Err(PluginError::not_found(format!(
                "command not found: {command}"
            )));
        };
        if middleware.is_empty() {
            return self.run_route(caller, command, route, args, (timeout, Some(now)));
        }
        let mut request = CommandRequest {
            id: self.next_id(),
            command: command.into(),
            caller: caller.name.into(),
            args,
        };
        let mut entered: Vec<Arc<Slot>> = Vec::new();
        let mut answer: Option<Result<Payload, PluginError>> = None;
        for mw in &middleware {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let step = self.call_slot(
                caller,
                mw,
                (RecordKind::Middleware, &format!("before {command}")),
                (remaining, None),
                Call::Before(Box::new(request.clone())),
            );
            match step.map(|a| match a {
                Answer::Middleware(action) => Ok(*action),
                other => Err(other),
            }) {
                Ok(Ok(MiddlewareAction::Continue(next))) => {
                    request = next;
                    entered.push(mw.clone());
                }
                Ok(Ok(MiddlewareAction::Respond(result))) => {
                    answer = Some(result.into_result());
                    break;
                }
                Ok(Err(other)) => {
                    answer = Some(Err(mismatch("a middleware", &other)));
                    break;
                }
                Err(e) => {
                    answer = Some(Err(PluginError::new(
                        e.kind,
                        format!("middleware {} failed before {command}: {e}", mw.name),
                    )));
                    break;
                }
            }
        }
        let mut result = match answer {
            Some(r) => r,
            None => {
                // Middleware may rewrite the command name: route it again.
                let route = if request.command.as_str() == command {
                    Some(route)
                } else {
                    self.routes
                        .read()
                        .commands
                        .get(request.command.as_str())
                        .cloned()
                };
                match route {
                    Some(route) => self.run_route(
                        caller,
                        request.command.as_str(),
                        route,
                        request.args.clone(),
                        (deadline.saturating_duration_since(Instant::now()), None),
                    ),
                    None => Err(PluginError::not_found(format!(
                        "command not found: {}",
                        request.command
                    ))),
                }
            }
        };
        for mw in entered.iter().rev() {
            let remaining = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let outcome = self.call_slot(
                caller,
                mw,
                (RecordKind::Middleware, &format!("after {command}")),
                (remaining, None),
                Call::After(Box::new((request.clone(), result.clone()))),
            );
            result = match outcome {
                Ok(Answer::Passed(r)) => r,
                Ok(other) => Err(mismatch("a middleware", &other)),
                Err(e) => Err(PluginError::new(
                    e.kind,
                    format!("middleware {} failed after {command}: {e}", mw.name),
                )),
            };
        }
        result
    }

    fn run_route(
        &self,
        caller: &Caller<'_>,
        command: &str,
        route: Route,
        args: Payload,
        (timeout, queued): (Duration, Option<Instant>),
    ) -> Result<Payload, PluginError> {
        match route {
            Route::Host(handler) => {
                let request = CommandRequest {
                    id: 0,
                    command: command.into(),
                    caller: caller.name.into(),
                    args,
                };
                let reply =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&request)))
                        .unwrap_or_else(|_| {
                            Err(PluginError::new(
                                ErrorKind::Panicked,
                                format!("host command {command} panicked"),
                            ))
                        });
                match reply {
                    Ok(p) if p.len() > self.config.max_payload_bytes => {
                        Err(PluginError::invalid(format!(
                            "{command}: reply of {} bytes exceeds the limit of {} bytes",
                            p.len(),
                            self.config.max_payload_bytes
                        )))
                    }
                    other => other,
                }
            }
            Route::Plugin { slot, short, full } => self
                .call_slot(
                    caller,
                    &slot,
                    (RecordKind::Command, &full),
                    (timeout, queued),
                    Call::Command {
                        command: Label::new(&short),
                        args,
                    },
                )
                .and_then(Answer::into_payload),
        }
    }
}
