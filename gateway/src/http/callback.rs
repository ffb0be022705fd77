//! The callback handler: accept the request, then ask the workers (before-callbacks) or
//! notify them (after-callbacks), and answer.
//!
//! Who decided an answer is worked out in one place, [`classify`], from what came of asking
//! ([`Verdict`]); logging and metrics follow from that, and the default decision is used for
//! every source but the worker's.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{request::Parts, StatusCode},
    response::Response,
};
use bytes::Bytes;
use openim_gateway_proto::{CallbackKind, Command, DecisionSource};
use tokio::{task::JoinHandle, time::Instant};

use super::{
    accept::{self, Accepted, Rejection},
    answer::{self, json_response, Prebuilt},
    off_loop::{finished, off_loop, start_off_loop},
    AppState,
};
use crate::{
    deadline::Deadline,
    decision::{self, Body, DefaultDecision, Effect},
    nats::{CallbackMeta, NotDelivered, Outcome},
    outcome::{InvalidReply, RejectReason, ShadowOutcome},
    rules::CommandRules,
    settings::policy::Mode,
    telemetry::{Answered, CallbackTrace},
};

/// A callback that passed every check, with its clock.
struct Callback<'a> {
    command: &'static Command,
    /// The HTTP request line and headers (OpenIM's `operationID` header).
    parts: &'a Parts,
    /// The body, parsed once.
    request: Arc<Body>,
    deadline: Deadline,
    request_id: uuid::Uuid,
    /// The command's mode and default, as they were when it arrived.
    rules: CommandRules<'a>,
    /// The answers serialised once, as they were when it arrived.
    prebuilt: &'a Prebuilt,
    /// Its span (traces on) and the trace context the workers get.
    trace: CallbackTrace,
}

impl Callback<'_> {
    fn meta(&self) -> CallbackMeta<'_> {
        CallbackMeta {
            command: self.command,
            request_id: self.request_id,
            operation_id: accept::operation_id(self.parts, &self.request),
            deadline: self.deadline,
            traceparent: self.trace.traceparent(),
            tracestate: self.trace.tracestate(),
        }
    }
}

/// What came of asking the workers, once a reply (if any) has been judged.
#[derive(Debug)]
enum Verdict {
    /// A valid reply: the answer for OpenIM and, in shadow mode, what it would have done to
    /// the operation (read while judging: the answer is not parsed again on the event loop;
    /// `None` when the mode does not compare).
    Answer(Bytes, Option<Effect>),
    /// A reply OpenIM must not see.
    Invalid(InvalidReply),
    /// A reply arrived, but could not be judged before the deadline (a very large reply).
    Unjudged,
    /// No reply before the deadline.
    Timeout,
    /// Nobody subscribes to the subject.
    NoResponders,
    /// NATS is not connected.
    Unavailable,
    /// The NATS client refused the request, for this reason.
    NotPublished(String),
}

/// Who decided the answer. Every branch but the first answers the configured default.
fn classify(verdict: &Verdict) -> DecisionSource {
    match verdict {
        // The worker's decision, checked and normalised.
        Verdict::Answer(..) => DecisionSource::Worker,
        // The worker answered, but not in a form OpenIM can safely apply: its fault.
        Verdict::Invalid(_) => DecisionSource::InvalidReply,
        // Either way the worker's decision was not there in time to be used.
        Verdict::Unjudged | Verdict::Timeout => DecisionSource::Timeout,
        // Nobody serves this command: NATS said so at once.
        Verdict::NoResponders => DecisionSource::NoResponders,
        // NATS is down or refused the request: nothing could be asked in time.
        Verdict::Unavailable | Verdict::NotPublished(_) => DecisionSource::Unavailable,
    }
}

/// Says why a callback got the default: one debug line per callback, and a warning per
/// condition (the first occurrence at once, then a count per interval).
fn log_fallback(state: &AppState, verdict: &Verdict, command: &Command, request_id: uuid::Uuid) {
    let conditions = &state.conditions;
    let (condition, detail): (_, &dyn std::fmt::Display) = match verdict {
        Verdict::Answer(..) => return,
        Verdict::Invalid(error) => (&conditions.invalid_reply, error),
        Verdict::Unjudged => (
            &conditions.timeout,
            &"the reply could not be checked in time",
        ),
        Verdict::Timeout => (&conditions.timeout, &""),
        Verdict::NoResponders => (&conditions.no_responders, &""),
        Verdict::Unavailable => (&conditions.unavailable, &""),
        Verdict::NotPublished(error) => (&conditions.publish_failed, error),
    };
    tracing::debug!(command = command.name, %request_id, source = classify(verdict).as_str(), %detail, "answering the default");
    condition.note(command.name, detail);
}

/// Says why a request was refused: one debug line per request, and a warning per condition
/// (an unknown command, or any other refusal), the first at once with its message, then a
/// count per interval: a client that keeps sending the same bad request does not flood the log.
fn log_rejection(state: &AppState, rejection: &Rejection, request_id: uuid::Uuid) {
    let status = rejection.reason.status().as_u16();
    let reason = rejection.reason.as_str();
    tracing::debug!(status, reason, %request_id, message = %rejection.message, "bad callback request");
    let condition = if rejection.reason == RejectReason::UnknownCommand {
        &state.conditions.unknown_command
    } else {
        &state.conditions.bad_request
    };
    let command = rejection.command.map_or("", |command| command.name);
    condition.note(
        command,
        &format_args!("{status} {reason}: {}", rejection.message),
    );
}

/// The callback handler: validate, then ask the workers (before) or notify them (after).
pub(super) async fn callback(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let arrival = Instant::now();
    let request_id = uuid::Uuid::now_v7();
    let (parts, body) = request.into_parts();
    let live = state.live();
    match accept::accept(state.limits(&live), &parts, body, arrival).await {
        Ok(Accepted {
            command,
            payload,
            request,
            deadline,
        }) => {
            let callback = Callback {
                command,
                parts: &parts,
                request,
                deadline,
                request_id,
                rules: live.rules.of(command),
                prebuilt: &live.prebuilt,
                trace: CallbackTrace::start(&parts.headers, command.name, arrival.elapsed()),
            };
            // The body goes to NATS byte for byte.
            match command.kind {
                CallbackKind::Before => decide(&state, callback, payload).await,
                CallbackKind::After => notify(&state, callback, payload).await,
            }
        }
        Err(rejection) => {
            state.metrics.bad_request(rejection.reason);
            log_rejection(&state, &rejection, request_id);
            answer::refused(
                &live.prebuilt,
                live.rules.global_default(),
                rejection,
                request_id,
            )
        }
    }
}

/// Asks a worker and answers with its normalised reply, or the default with the reason.
async fn decide(state: &AppState, callback: Callback<'_>, payload: Bytes) -> Response {
    let command = callback.command;
    let rules = callback.rules;
    let default = PreparedDefault::start(&callback, payload.len());
    if rules.mode == Mode::Off {
        // Switched off in the policy file: nobody is asked.
        return answer_default(state, &callback, default, DecisionSource::Off).await;
    }
    let Some(_admitted) = state.admit() else {
        // Past the bound, asking would only queue behind callbacks already late: the default
        // at once keeps every answer in time.
        state.conditions.overload.note(command.name, &"");
        return answer_default(state, &callback, default, DecisionSource::Overload).await;
    };
    let outcome = state.forwarder.ask(&callback.meta(), payload).await;
    let compare = rules.mode == Mode::Shadow;
    let verdict = match outcome {
        Outcome::Reply(reply) => {
            state.metrics.worker_replied(command, reply.waited);
            let request = Arc::clone(&callback.request);
            let prebuilt = callback.prebuilt.clone();
            off_loop(reply.payload.len(), callback.deadline.at, move || {
                decision::judge_reply(
                    command,
                    &request,
                    reply.service_error.as_deref(),
                    &reply.payload,
                )
                .map(|answer| {
                    let effect = compare.then(|| decision::effect(command, &request, &answer));
                    (prebuilt.encode(&answer), effect)
                })
            })
            .await
            .map_or(Verdict::Unjudged, |judged| {
                judged.map_or_else(Verdict::Invalid, |(answer, effect)| {
                    Verdict::Answer(answer, effect)
                })
            })
        }
        Outcome::Timeout => Verdict::Timeout,
        Outcome::NoResponders => Verdict::NoResponders,
        Outcome::Unavailable => Verdict::Unavailable,
        Outcome::NotPublished(error) => Verdict::NotPublished(error),
    };
    if rules.mode == Mode::Shadow {
        let shadow = shadow_outcome(&verdict, rules.default);
        state.metrics.shadow(command, shadow);
        // A summary per command at info every interval, so that shadow mode shows in the log.
        state.conditions.shadow.note(command.name, shadow);
        // One line per callback, at debug like every per-callback line: the metric counts.
        tracing::debug!(
            command = command.name,
            request_id = %callback.request_id,
            worker = %classify(&verdict),
            outcome = shadow.as_str(),
            "shadow: the worker was heard, the default answered"
        );
        if let Verdict::Invalid(invalid) = &verdict {
            state.metrics.invalid_reply(command, invalid.reason());
        }
        return answer_default(state, &callback, default, DecisionSource::Shadow).await;
    }
    let source = classify(&verdict);
    log_fallback(state, &verdict, command, callback.request_id);
    match verdict {
        Verdict::Answer(answer, _) => {
            answered(state, &callback, source);
            json_response(StatusCode::OK, source, Some(callback.request_id), answer)
        }
        Verdict::Invalid(invalid) => {
            state.metrics.invalid_reply(command, invalid.reason());
            answer_default(state, &callback, default, source).await
        }
        Verdict::Unjudged
        | Verdict::Timeout
        | Verdict::NoResponders
        | Verdict::Unavailable
        | Verdict::NotPublished(_) => answer_default(state, &callback, default, source).await,
    }
}

/// Answers the command's default decision, counted and marked with `source`.
async fn answer_default(
    state: &AppState,
    callback: &Callback<'_>,
    default: PreparedDefault,
    source: DecisionSource,
) -> Response {
    let body = default.resolve(callback).await;
    answered(state, callback, source);
    json_response(StatusCode::OK, source, Some(callback.request_id), body)
}

/// The default answer of a before-callback. For the commands whose answer must echo the
/// request (the SetGroupInfo pair) and a large body, it is built on the blocking pool from
/// the start, so that it is ready when the wait ends and the event loop never serialises a
/// large body.
enum PreparedDefault {
    /// Built when needed, on the loop: the body is small, or nothing is echoed.
    Inline,
    /// Being built on the blocking pool.
    Building(JoinHandle<Bytes>),
}

impl PreparedDefault {
    fn start(callback: &Callback<'_>, body_len: usize) -> Self {
        let default = callback.rules.default;
        if !callback.command.echoes_request() {
            return Self::Inline;
        }
        let command = callback.command;
        let request = Arc::clone(&callback.request);
        let decision = default.clone();
        let prebuilt = callback.prebuilt.clone();
        start_off_loop(body_len, move || {
            prebuilt.encode(&decision::default_answer(
                &decision,
                Some(command),
                Some(&request),
            ))
        })
        .map_or(Self::Inline, Self::Building)
    }

    async fn resolve(self, callback: &Callback<'_>) -> Bytes {
        if let Self::Building(building) = self {
            // Started at arrival, and cheaper than the parse of the same body that already
            // finished inside the deadline: waiting for it is waiting for work nearly done.
            if let Some(answer) = finished(building.await) {
                return answer;
            }
        }
        callback.prebuilt.encode(&decision::default_answer(
            callback.rules.default,
            Some(callback.command),
            Some(&callback.request),
        ))
    }
}

/// How a shadowed worker's decision compares with the default answered instead: `agree`
/// (both allow unchanged, or both refuse), `disagree` (one allows, the other refuses),
/// `modify` (both allow, the worker with changes), or `no_decision` when no valid reply came
/// in time.
fn shadow_outcome(verdict: &Verdict, default: &DefaultDecision) -> ShadowOutcome {
    let Verdict::Answer(_, Some(effect)) = verdict else {
        return ShadowOutcome::NoDecision;
    };
    match (default, effect) {
        (DefaultDecision::Allow, Effect::Allows)
        | (DefaultDecision::Reject { .. }, Effect::Refuses) => ShadowOutcome::Agree,
        (DefaultDecision::Allow, Effect::Modifies) => ShadowOutcome::Modify,
        (DefaultDecision::Allow, Effect::Refuses)
        | (DefaultDecision::Reject { .. }, Effect::Allows | Effect::Modifies) => {
            ShadowOutcome::Disagree
        }
    }
}

/// Counts an answered callback and logs one line for it at debug, with what an operator
/// searching for one callback needs: its request id (the `X-Request-Id` OpenIM got), the
/// command, who decided and how long it took. Debug, so that normal logs stay quiet at
/// thousands of callbacks a second.
fn answered(state: &AppState, callback: &Callback<'_>, source: DecisionSource) {
    let latency = callback.deadline.arrival.elapsed();
    let budget = callback.rules.budget;
    state
        .metrics
        .answered(callback.command, source, latency, budget);
    if latency > budget {
        state.conditions.late.note(
            callback.command.name,
            &format_args!(
                "answered after {} ms, budget {} ms",
                latency.as_millis(),
                budget.as_millis()
            ),
        );
    }
    if callback.trace.has_span() {
        callback.trace.finish(&Answered {
            request_id: callback.request_id,
            operation_id: accept::operation_id(callback.parts, &callback.request),
            source: source.as_str(),
            budget,
            waited: latency,
        });
    }
    tracing::debug!(
        request_id = %callback.request_id,
        command = callback.command.name,
        source = source.as_str(),
        latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        "callback answered"
    );
}

/// Publishes an after-callback and acknowledges at once: OpenIM has two senders per process
/// for these, so a slow answer would stall it.
async fn notify(state: &AppState, callback: Callback<'_>, payload: Bytes) -> Response {
    let source = if callback.rules.mode == Mode::Off {
        // Switched off in the policy file: acknowledged, not published.
        DecisionSource::Off
    } else {
        match state.forwarder.notify(&callback.meta(), payload).await {
            Ok(()) => DecisionSource::Ack,
            Err(failure) => {
                tracing::debug!(command = callback.command.name, request_id = %callback.request_id, %failure, "after-callback not published");
                match failure {
                    // The condition's own words say it all.
                    NotDelivered::Unavailable => {
                        state
                            .conditions
                            .unpublished
                            .note(callback.command.name, &"");
                    }
                    NotDelivered::NotStored { .. } => {
                        state
                            .conditions
                            .unstored
                            .note(callback.command.name, &failure);
                    }
                }
                DecisionSource::Unpublished
            }
        }
    };
    answered(state, &callback, source);
    json_response(
        StatusCode::OK,
        source,
        Some(callback.request_id),
        callback.prebuilt.allow.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verdict_has_one_source() {
        let cases = [
            (
                Verdict::Answer(Bytes::from_static(b"{}"), None),
                DecisionSource::Worker,
            ),
            (
                Verdict::Invalid(InvalidReply::NotObject),
                DecisionSource::InvalidReply,
            ),
            (
                Verdict::Invalid(InvalidReply::ServiceError("boom".to_owned())),
                DecisionSource::InvalidReply,
            ),
            (Verdict::Unjudged, DecisionSource::Timeout),
            (Verdict::Timeout, DecisionSource::Timeout),
            (Verdict::NoResponders, DecisionSource::NoResponders),
            (Verdict::Unavailable, DecisionSource::Unavailable),
            (
                Verdict::NotPublished("closed".to_owned()),
                DecisionSource::Unavailable,
            ),
        ];
        for (verdict, source) in cases {
            assert_eq!(classify(&verdict), source, "{verdict:?}");
        }
    }

    #[test]
    fn only_the_worker_source_is_not_a_fallback() {
        for verdict in [
            Verdict::Invalid(InvalidReply::NotObject),
            Verdict::Unjudged,
            Verdict::Timeout,
            Verdict::NoResponders,
            Verdict::Unavailable,
            Verdict::NotPublished("closed".to_owned()),
        ] {
            assert!(classify(&verdict).is_fallback(), "{verdict:?}");
        }
        assert!(!classify(&Verdict::Answer(Bytes::new(), None)).is_fallback());
    }

    #[test]
    fn shadow_outcomes_compare_the_workers_effect_with_the_default() {
        let allow = DefaultDecision::Allow;
        let reject = DefaultDecision::Reject {
            err_code: 5000,
            err_msg: "no".to_owned(),
        };
        let answer = |effect| Verdict::Answer(Bytes::new(), Some(effect));
        let cases = [
            (&allow, answer(Effect::Allows), ShadowOutcome::Agree),
            (&allow, answer(Effect::Modifies), ShadowOutcome::Modify),
            (&allow, answer(Effect::Refuses), ShadowOutcome::Disagree),
            (&reject, answer(Effect::Refuses), ShadowOutcome::Agree),
            (&reject, answer(Effect::Allows), ShadowOutcome::Disagree),
            (&reject, answer(Effect::Modifies), ShadowOutcome::Disagree),
            (&allow, Verdict::Timeout, ShadowOutcome::NoDecision),
            (
                &reject,
                Verdict::Invalid(InvalidReply::NotObject),
                ShadowOutcome::NoDecision,
            ),
        ];
        for (default, verdict, outcome) in cases {
            assert_eq!(
                shadow_outcome(&verdict, default),
                outcome,
                "{default:?} {verdict:?}"
            );
        }
    }
}
