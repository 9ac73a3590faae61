//! The semantics of a call, as one explicit state machine.
//!
//! A call is [`CallState`]: whether it may have run somewhere (and at which server
//! incarnation, on which endpoint), how many attempts it has made, and its current
//! retry backoff. Each step of the call's async loop ends in an [`Outcome`]; the pure
//! function [`next`] maps (state, outcome, semantics, policy, time left) to the new
//! state and a [`Step`]: send the request, wait for its answer, retry after a pause
//! (avoiding an endpoint), or return. The loop in `client/mod.rs` only executes steps;
//! every rule of docs/SEMANTICS.md's tables lives here, and the unit tests below check
//! every (semantics, outcome) pair without tokio.

use std::time::{Duration, Instant};

use crate::error::{RpcError, TransportError};
use crate::frame::Semantics;

use super::RetryPolicy;

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallState {
    /// Whether the call may have run.
    pub(crate) phase: Phase,
    /// Attempts made so far (the one under way included).
    pub(crate) attempt: u32,
    /// The pause before the next attempt, before jitter.
    pub(crate) backoff: Duration,
}

/// Whether a call may have run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Nothing was sent, or every answer so far proved it was not executed.
    Fresh,
    /// The request went out to `endpoint`, reaching server incarnation `incarnation`,
    /// and no answer has settled it: it may have run there.
    InDoubt {
        /// The incarnation of the server the request reached.
        incarnation: u64,
        /// The endpoint it went to.
        endpoint: u64,
    },
}

/// How one step of a call ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// No endpoint could be chosen (the resolver knows none, or all are down).
    NoEndpoint(TransportError),
    /// Connecting to `endpoint` (or the incarnation probe) failed; nothing was sent.
    /// `fail_fast`: the endpoint refused and has never answered (and the policy does not
    /// wait for the server), so nothing listens there.
    ConnectFailed {
        /// The endpoint.
        endpoint: u64,
        /// What went wrong.
        error: TransportError,
        /// Whether the endpoint is known not to be there.
        fail_fast: bool,
    },
    /// A connection whose server is `incarnation` is ready.
    Connected {
        /// The incarnation its server reported.
        incarnation: u64,
    },
    /// The request could not be handed to the transport; nothing was sent.
    SendFailed {
        /// The endpoint.
        endpoint: u64,
        /// What went wrong.
        error: TransportError,
    },
    /// The request went out on a connection to `endpoint` (server `incarnation`).
    Sent {
        /// The endpoint.
        endpoint: u64,
        /// The incarnation of its server.
        incarnation: u64,
    },
    /// The connection the request went out on failed before an answer came.
    Lost(TransportError),
    /// The attempt's timeout passed with no answer (the call's deadline did not).
    AttemptTimedOut,
    /// The call's own deadline passed.
    DeadlinePassed,
    /// A reply arrived.
    Replied,
    /// A status arrived (converted to the error the call would return).
    Status(RpcError),
}

/// What the call's loop does next.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// Send the request on the connection just made.
    Send,
    /// Wait for the answer to the request just sent.
    Wait,
    /// Start another attempt after `after`, on an endpoint other than `avoid` if there
    /// is a choice (an in-doubt exactly-once call stays on [`CallState::pinned`]). A
    /// request that is out keeps listening for its answer during the pause.
    Retry {
        /// The pause.
        after: Duration,
        /// The endpoint the failure was on.
        avoid: Option<u64>,
    },
    /// The call is over: `Ok(())` means decode the reply that arrived.
    Return(Result<(), RpcError>),
}

/// How close to its deadline a call must be for a server's `DeadlineExceeded` to mean
/// the call's own deadline (a margin for the microsecond rounding of the budget sent).
const DEADLINE_SLACK: Duration = Duration::from_millis(1);

/// What `next` needs besides the state and the outcome.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// The call's semantics.
    pub(crate) semantics: Semantics,
    /// Its retry policy.
    pub(crate) policy: &'a RetryPolicy,
    /// The call's deadline. The clock is read only on the paths that weigh the time
    /// left (a retry's pause, a server's deadline status), not on every step.
    pub(crate) deadline: Instant,
    /// A uniform random sample in `0..=u32::MAX`, for the pause's jitter.
    pub(crate) jitter: u32,
}

impl Context<'_> {
    /// Time left before the call's deadline.
    fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

impl CallState {
    /// A call about to make its first attempt.
    pub(crate) fn new(policy: &RetryPolicy) -> Self {
        CallState {
            phase: Phase::Fresh,
            attempt: 1,
            backoff: policy.initial_backoff,
        }
    }

    /// The endpoint an exactly-once call in doubt must stay with: only its reply cache
    /// knows the call, a different server would run it again.
    pub(crate) fn pinned(&self, semantics: Semantics) -> Option<u64> {
        match (semantics, self.phase) {
            (Semantics::ExactlyOnce, Phase::InDoubt { endpoint, .. }) => Some(endpoint),
            _ => None,
        }
    }

    /// Whether the call may have run.
    pub(crate) fn in_doubt(&self) -> bool {
        matches!(self.phase, Phase::InDoubt { .. })
    }
}

/// The pause before another attempt, if one is allowed (attempts left) and could start
/// before the deadline; with the backoff after it.
fn pause(state: &CallState, cx: &Context<'_>) -> Option<(Duration, Duration)> {
    if state.attempt >= cx.policy.max_attempts {
        return None;
    }
    // A random 50-100 % of the backoff.
    let half = state.backoff / 2;
    let extra = half.mul_f64(f64::from(cx.jitter) / f64::from(u32::MAX));
    let after = half + extra;
    if after >= cx.time_left() {
        return None;
    }
    Some((after, (state.backoff * 2).min(cx.policy.max_backoff)))
}

/// Retry after a pause if one is allowed; otherwise return `give_up`.
fn retry_or(
    state: CallState,
    cx: &Context<'_>,
    phase: Phase,
    avoid: Option<u64>,
    give_up: RpcError,
) -> (CallState, Step) {
    match pause(&state, cx) {
        Some((after, backoff)) => (
            CallState {
                phase,
                attempt: state.attempt + 1,
                backoff,
            },
            Step::Retry { after, avoid },
        ),
        None => (state, Step::Return(Err(give_up))),
    }
}

fn done(state: CallState, result: Result<(), RpcError>) -> (CallState, Step) {
    (state, Step::Return(result))
}

/// The transition function: the new state, and what to do.
pub(crate) fn next(state: CallState, outcome: Outcome, cx: &Context<'_>) -> (CallState, Step) {
    let policy = cx.policy;
    let amo = cx.semantics == Semantics::AtMostOnce;
    // The error a call in doubt ends with when the transport failed it: at-most-once
    // says the outcome is unknown; the others, which would have been resent, say the
    // transport failed.
    let lost = |e: TransportError| {
        if amo {
            RpcError::OutcomeUnknown(e)
        } else {
            RpcError::Transport(e)
        }
    };
    match (state.phase, outcome) {
        (_, Outcome::DeadlinePassed) => done(state, Err(RpcError::Timeout)),
        (_, Outcome::Replied) => done(state, Ok(())),

        // Nothing was sent by this attempt.
        (Phase::Fresh, Outcome::NoEndpoint(e)) => {
            if policy.retry_not_executed {
                retry_or(state, cx, Phase::Fresh, None, RpcError::Unreachable(e))
            } else {
                done(state, Err(RpcError::Unreachable(e)))
            }
        }
        (
            Phase::Fresh,
            Outcome::ConnectFailed {
                endpoint,
                error,
                fail_fast,
            },
        ) => {
            if policy.retry_not_executed && !fail_fast {
                retry_or(
                    state,
                    cx,
                    Phase::Fresh,
                    Some(endpoint),
                    RpcError::Unreachable(error),
                )
            } else {
                done(state, Err(RpcError::Unreachable(error)))
            }
        }
        (Phase::Fresh, Outcome::SendFailed { endpoint, error }) => {
            if policy.retry_not_executed {
                retry_or(
                    state,
                    cx,
                    Phase::Fresh,
                    Some(endpoint),
                    RpcError::Unreachable(error),
                )
            } else {
                done(state, Err(RpcError::Unreachable(error)))
            }
        }
        // In doubt (only at-least-once and exactly-once calls stay in doubt across
        // attempts): resent whatever `retry_not_executed` says, and when retries run out
        // the call may have run.
        (phase @ Phase::InDoubt { .. }, Outcome::NoEndpoint(e)) => {
            retry_or(state, cx, phase, None, lost(e))
        }
        (
            phase @ Phase::InDoubt { .. },
            Outcome::ConnectFailed {
                endpoint, error, ..
            },
        )
        | (phase @ Phase::InDoubt { .. }, Outcome::SendFailed { endpoint, error }) => {
            retry_or(state, cx, phase, Some(endpoint), lost(error))
        }

        (Phase::Fresh, Outcome::Connected { .. }) => (state, Step::Send),
        (
            Phase::InDoubt {
                incarnation: was, ..
            },
            Outcome::Connected { incarnation, .. },
        ) => {
            if was != incarnation && cx.semantics != Semantics::AtLeastOnce {
                // The server that may have run it is gone; the new one cannot recognise
                // a resend as a duplicate.
                done(state, Err(RpcError::ServerRestarted))
            } else {
                (state, Step::Send)
            }
        }
        (
            _,
            Outcome::Sent {
                endpoint,
                incarnation,
            },
        ) => (
            CallState {
                phase: Phase::InDoubt {
                    incarnation,
                    endpoint,
                },
                ..state
            },
            Step::Wait,
        ),

        // The request went out and no answer came.
        (Phase::InDoubt { endpoint, .. }, Outcome::Lost(e)) => {
            if amo {
                done(state, Err(RpcError::OutcomeUnknown(e)))
            } else {
                retry_or(
                    state,
                    cx,
                    state.phase,
                    Some(endpoint),
                    RpcError::Transport(e),
                )
            }
        }
        (Phase::InDoubt { endpoint, .. }, Outcome::AttemptTimedOut) => {
            let e = TransportError::NoAnswer;
            if amo {
                done(state, Err(RpcError::OutcomeUnknown(e)))
            } else {
                retry_or(
                    state,
                    cx,
                    state.phase,
                    Some(endpoint),
                    RpcError::Transport(e),
                )
            }
        }
        // Nothing was out: a connection lost or an attempt timer firing before anything
        // was sent proves nothing ran.
        (Phase::Fresh, Outcome::Lost(e)) => {
            retry_or(state, cx, Phase::Fresh, None, RpcError::Unreachable(e))
        }
        (Phase::Fresh, Outcome::AttemptTimedOut) => retry_or(
            state,
            cx,
            Phase::Fresh,
            None,
            RpcError::Unreachable(TransportError::NoAnswer),
        ),

        (phase, Outcome::Status(err)) => match err {
            // Refused before running: safe to send again whatever the semantics, and to
            // another endpoint; the call is no longer in doubt.
            RpcError::Overloaded | RpcError::ShuttingDown if policy.retry_not_executed => {
                let avoid = match phase {
                    Phase::InDoubt { endpoint, .. } => Some(endpoint),
                    Phase::Fresh => None,
                };
                retry_or(state, cx, Phase::Fresh, avoid, err)
            }
            // The server saw the call's deadline pass before running it: the same
            // situation as the client seeing it, the same error. (The server's budget
            // starts when the call arrives, so by the time its answer is back the
            // client's deadline has passed too.) With time left, the limit was the
            // server's own (a timeout layer shorter than the call's deadline): the
            // server's status stands.
            RpcError::DeadlineExceeded if cx.time_left() <= DEADLINE_SLACK => {
                done(state, Err(RpcError::Timeout))
            }
            err => done(state, Err(err)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Semantics; 3] = [
        Semantics::AtMostOnce,
        Semantics::AtLeastOnce,
        Semantics::ExactlyOnce,
    ];
    const EP: u64 = 7;
    const INC: u64 = 1000;

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    fn cx(semantics: Semantics, policy: &RetryPolicy) -> Context<'_> {
        Context {
            semantics,
            policy,
            deadline: Instant::now() + Duration::from_secs(30),
            jitter: u32::MAX / 2,
        }
    }

    fn fresh(policy: &RetryPolicy) -> CallState {
        CallState::new(policy)
    }

    fn in_doubt(policy: &RetryPolicy) -> CallState {
        CallState {
            phase: Phase::InDoubt {
                incarnation: INC,
                endpoint: EP,
            },
            ..CallState::new(policy)
        }
    }

    fn refused() -> TransportError {
        TransportError::Closed
    }

    /// Every outcome, for the exhaustive tables.
    fn outcomes() -> Vec<Outcome> {
        vec![
            Outcome::NoEndpoint(TransportError::NoEndpoints),
            Outcome::ConnectFailed {
                endpoint: EP,
                error: refused(),
                fail_fast: false,
            },
            Outcome::ConnectFailed {
                endpoint: EP,
                error: refused(),
                fail_fast: true,
            },
            Outcome::Connected { incarnation: INC },
            Outcome::Connected {
                incarnation: INC + 1,
            },
            Outcome::SendFailed {
                endpoint: EP,
                error: TransportError::Closed,
            },
            Outcome::Sent {
                endpoint: EP,
                incarnation: INC,
            },
            Outcome::Lost(TransportError::Closed),
            Outcome::AttemptTimedOut,
            Outcome::DeadlinePassed,
            Outcome::Replied,
            Outcome::Status(RpcError::Overloaded),
            Outcome::Status(RpcError::ShuttingDown),
            Outcome::Status(RpcError::DeadlineExceeded),
            Outcome::Status(RpcError::UnknownProcedure { procedure: 9 }),
            Outcome::Status(RpcError::Application {
                code: 1,
                message: "no".into(),
            }),
            Outcome::Status(RpcError::PermissionDenied {
                message: "no".into(),
            }),
            Outcome::Status(RpcError::Unauthenticated {
                message: "no".into(),
            }),
        ]
    }

    /// What a test expects of one (phase, semantics, outcome).
    #[derive(Debug, PartialEq)]
    enum Want {
        Send,
        Wait,
        /// Retry, with the phase it retries in.
        Retry(Phase),
        Ok,
        Err(&'static str),
    }

    fn kind(e: &RpcError) -> &'static str {
        match e {
            RpcError::Timeout => "Timeout",
            RpcError::Unreachable(_) => "Unreachable",
            RpcError::Transport(_) => "Transport",
            RpcError::OutcomeUnknown(_) => "OutcomeUnknown",
            RpcError::ServerRestarted => "ServerRestarted",
            RpcError::Overloaded => "Overloaded",
            RpcError::ShuttingDown => "ShuttingDown",
            RpcError::UnknownProcedure { .. } => "UnknownProcedure",
            RpcError::Application { .. } => "Application",
            RpcError::DeadlineExceeded => "DeadlineExceeded",
            RpcError::PermissionDenied { .. } => "PermissionDenied",
            RpcError::Unauthenticated { .. } => "Unauthenticated",
            other => panic!("unexpected error in the table: {other:?}"),
        }
    }

    fn got(state: CallState, step: &Step) -> Want {
        match step {
            Step::Send => Want::Send,
            Step::Wait => Want::Wait,
            Step::Retry { .. } => Want::Retry(state.phase),
            Step::Return(Ok(())) => Want::Ok,
            Step::Return(Err(e)) => Want::Err(kind(e)),
        }
    }

    /// The table of docs/SEMANTICS.md, written out: for a call with attempts and time
    /// left, what each (phase, semantics, outcome) does.
    fn expected(fresh_phase: bool, s: Semantics, o: &Outcome) -> Want {
        use Semantics::*;
        let doubt = Phase::InDoubt {
            incarnation: INC,
            endpoint: EP,
        };
        match (fresh_phase, o) {
            (_, Outcome::DeadlinePassed) => Want::Err("Timeout"),
            (_, Outcome::Replied) => Want::Ok,
            (_, Outcome::Sent { .. }) => Want::Wait,
            (_, Outcome::Status(RpcError::Overloaded | RpcError::ShuttingDown)) => {
                Want::Retry(Phase::Fresh)
            }
            // The table's calls have time left: a server-side limit.
            (_, Outcome::Status(RpcError::DeadlineExceeded)) => Want::Err("DeadlineExceeded"),
            (_, Outcome::Status(RpcError::UnknownProcedure { .. })) => {
                Want::Err("UnknownProcedure")
            }
            // Refused by the authorizer: never retried, whatever the semantics.
            (_, Outcome::Status(RpcError::PermissionDenied { .. })) => {
                Want::Err("PermissionDenied")
            }
            (_, Outcome::Status(RpcError::Unauthenticated { .. })) => Want::Err("Unauthenticated"),
            (_, Outcome::Status(_)) => Want::Err("Application"),
            (
                true,
                Outcome::ConnectFailed {
                    fail_fast: true, ..
                },
            ) => Want::Err("Unreachable"),
            (true, Outcome::Connected { .. }) => Want::Send,
            (true, _) => Want::Retry(Phase::Fresh),
            (false, Outcome::Connected { incarnation, .. }) => {
                if *incarnation != INC && s != AtLeastOnce {
                    Want::Err("ServerRestarted")
                } else {
                    Want::Send
                }
            }
            (false, Outcome::Lost(_) | Outcome::AttemptTimedOut) if s == AtMostOnce => {
                Want::Err("OutcomeUnknown")
            }
            (false, _) => Want::Retry(doubt),
        }
    }

    #[test]
    fn every_semantics_and_outcome_with_retries_left() {
        let p = policy();
        let mut checked = 0;
        for s in ALL {
            for (is_fresh, state) in [(true, fresh(&p)), (false, in_doubt(&p))] {
                for o in outcomes() {
                    let (next_state, step) = next(state, o.clone(), &cx(s, &p));
                    let want = expected(is_fresh, s, &o);
                    assert_eq!(
                        got(next_state, &step),
                        want,
                        "{s:?}, fresh={is_fresh}, {o:?}"
                    );
                    if let Step::Retry { .. } = step {
                        assert_eq!(next_state.attempt, state.attempt + 1);
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 3 * 2 * outcomes().len());
    }

    /// With no attempt left, every retry of the table becomes the error the call ends
    /// with: not executed is `Unreachable`, in doubt is `Transport` (or `OutcomeUnknown`
    /// for at-most-once), a refusal is itself.
    #[test]
    fn every_semantics_and_outcome_with_no_retry_left() {
        let p = policy().max_attempts(1);
        for s in ALL {
            for (is_fresh, state) in [(true, fresh(&p)), (false, in_doubt(&p))] {
                for o in outcomes() {
                    let (_, step) = next(state, o.clone(), &cx(s, &p));
                    let want = match expected(is_fresh, s, &o) {
                        Want::Retry(_) => match &o {
                            Outcome::Status(e) => Want::Err(kind(e)),
                            _ if is_fresh => Want::Err("Unreachable"),
                            _ if s == Semantics::AtMostOnce => Want::Err("OutcomeUnknown"),
                            _ => Want::Err("Transport"),
                        },
                        other => other,
                    };
                    assert_eq!(got(state, &step), want, "{s:?}, fresh={is_fresh}, {o:?}");
                }
            }
        }
    }

    #[test]
    fn not_executed_errors_are_returned_when_the_policy_says_so() {
        let p = policy().retry_not_executed(false);
        for s in ALL {
            for o in [
                Outcome::NoEndpoint(TransportError::NoEndpoints),
                Outcome::ConnectFailed {
                    endpoint: EP,
                    error: refused(),
                    fail_fast: false,
                },
                Outcome::SendFailed {
                    endpoint: EP,
                    error: TransportError::Closed,
                },
            ] {
                let (_, step) = next(fresh(&p), o.clone(), &cx(s, &p));
                assert!(
                    matches!(step, Step::Return(Err(RpcError::Unreachable(_)))),
                    "{s:?} {o:?}: {step:?}"
                );
                // In doubt, the call is resent anyway.
                let (_, step) = next(in_doubt(&p), o.clone(), &cx(s, &p));
                assert!(matches!(step, Step::Retry { .. }), "{s:?} {o:?}: {step:?}");
            }
            let (_, step) = next(fresh(&p), Outcome::Status(RpcError::Overloaded), &cx(s, &p));
            assert!(matches!(step, Step::Return(Err(RpcError::Overloaded))));
        }
    }

    #[test]
    fn a_retry_avoids_the_failed_endpoint_and_exactly_once_stays_pinned() {
        let p = policy();
        for s in ALL {
            let (state, step) = next(
                fresh(&p),
                Outcome::Sent {
                    endpoint: EP,
                    incarnation: INC,
                },
                &cx(s, &p),
            );
            assert!(matches!(step, Step::Wait));
            let want_pin = (s == Semantics::ExactlyOnce).then_some(EP);
            assert_eq!(state.pinned(s), want_pin, "{s:?}");
            if s == Semantics::AtMostOnce {
                continue;
            }
            let (state, step) = next(state, Outcome::Lost(TransportError::Closed), &cx(s, &p));
            assert!(
                matches!(
                    step,
                    Step::Retry {
                        avoid: Some(EP),
                        ..
                    }
                ),
                "{step:?}"
            );
            assert_eq!(state.pinned(s), want_pin, "{s:?} still pinned after a loss");
            // A refusal proves it did not run: no longer pinned.
            let (state, _) = next(state, Outcome::Status(RpcError::Overloaded), &cx(s, &p));
            assert_eq!(state.pinned(s), None);
            assert!(!state.in_doubt());
        }
    }

    #[test]
    fn pauses_double_up_to_the_limit_with_jitter_and_stop_at_the_deadline() {
        let p = policy().backoff(Duration::from_millis(4), Duration::from_millis(10));
        let s = Semantics::AtLeastOnce;
        let mut state = fresh(&p);
        let mut pauses = Vec::new();
        for _ in 0..4 {
            let c = Context {
                jitter: u32::MAX,
                ..cx(s, &p)
            };
            let (n, step) = next(state, Outcome::Lost(TransportError::Closed), &c);
            let Step::Retry { after, .. } = step else {
                panic!("{step:?}")
            };
            pauses.push(after);
            state = n;
        }
        let ms = Duration::from_millis;
        assert_eq!(pauses, [ms(4), ms(8), ms(10), ms(10)]);
        // The smallest jitter halves the pause.
        let c = Context {
            jitter: 0,
            ..cx(s, &p)
        };
        let (_, step) = next(fresh(&p), Outcome::Lost(TransportError::Closed), &c);
        assert!(matches!(step, Step::Retry { after, .. } if after == ms(2)));
        // A pause that would end past the deadline ends the call instead.
        let c = Context {
            deadline: Instant::now() + ms(1),
            ..cx(s, &p)
        };
        let (_, step) = next(in_doubt(&p), Outcome::Lost(TransportError::Closed), &c);
        assert!(matches!(step, Step::Return(Err(RpcError::Transport(_)))));
        // And the attempt limit ends it.
        let state = CallState {
            attempt: p.max_attempts,
            ..in_doubt(&p)
        };
        let (_, step) = next(state, Outcome::AttemptTimedOut, &cx(s, &p));
        assert!(matches!(
            step,
            Step::Return(Err(RpcError::Transport(TransportError::NoAnswer)))
        ));
    }

    #[test]
    fn timeout_means_the_call_s_own_deadline_passed() {
        let p = policy();
        for s in ALL {
            for state in [fresh(&p), in_doubt(&p)] {
                for time_left in [Duration::ZERO, Duration::from_secs(30)] {
                    let cx = Context {
                        deadline: Instant::now() + time_left,
                        ..cx(s, &p)
                    };
                    for o in outcomes() {
                        let (_, step) = next(state, o.clone(), &cx);
                        let deadline = match o {
                            Outcome::DeadlinePassed => true,
                            // The server's status means the call's deadline only when
                            // the client's has passed too; otherwise it stands.
                            Outcome::Status(RpcError::DeadlineExceeded) => time_left.is_zero(),
                            _ => false,
                        };
                        assert_eq!(
                            matches!(step, Step::Return(Err(RpcError::Timeout))),
                            deadline,
                            "{s:?} {o:?} {time_left:?}"
                        );
                        if !deadline && matches!(o, Outcome::Status(RpcError::DeadlineExceeded)) {
                            assert!(matches!(
                                step,
                                Step::Return(Err(RpcError::DeadlineExceeded))
                            ));
                        }
                    }
                }
            }
        }
    }
}
