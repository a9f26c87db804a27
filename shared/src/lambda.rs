//! The one shape every keyward function has. `main.rs` reads its typed configuration once,
//! builds its handler once (clients, credentials) and calls [`serve`]; the handler lives in the
//! function's library, where tests reach it.
//!
//! A handler takes the raw event (each function parses its own inputs, so a bad one is a typed
//! error naming what is wrong, never a runtime deserialisation failure) and answers with a
//! serialisable report or an error whose [`FailureKind::kind`] becomes Lambda's `errorType`.

use std::future::Future;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde::Serialize;
use serde_json::value::RawValue;

/// An error a function returns to Lambda: a stable kind, and a message built from redacted
/// text only.
pub trait FailureKind: std::error::Error {
    fn kind(&self) -> &'static str;
}

pub trait Handler {
    type Output: Serialize;
    type Error: FailureKind;
    fn handle(&self, payload: &str) -> impl Future<Output = Result<Self::Output, Self::Error>>;
}

/// Lambda's view of a failure: the kind, and each cause once.
pub fn diagnostic<E: FailureKind>(error: &E) -> Diagnostic {
    Diagnostic {
        error_type: error.kind().to_owned(),
        error_message: crate::redact::error_chain(error),
    }
}

/// Runs the handler for every event this sandbox receives.
pub async fn serve<H: Handler>(handler: H) -> Result<(), lambda_runtime::Error> {
    let handler = &handler;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Box<RawValue>>| async move {
            // Boxed: the handler's future is deep, and the runtime's own nesting on top of it
            // overflows the compiler's layout query depth. One allocation per invocation.
            Box::pin(handler.handle(event.payload.get()))
                .await
                .map_err(|e| diagnostic(&e))
        },
    ))
    .await
}
