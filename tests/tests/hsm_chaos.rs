//! Chaos: the daemon signing CometBFT votes with a key in SoftHSM, through
//! hsm-sim injecting one fault per test. In each: every request gets an
//! answer from the server (a verified signature or a typed refusal — never
//! a hang), the daemon recovers by itself when the fault ends, readiness and
//! metrics show the fault while it lasts, and nothing is ever signed twice
//! (`VoteLoad` checks every signature, and after every failed sign asks for
//! a conflicting vote at the same height/round/step, which must be refused
//! as slashable: the decision was recorded before the HSM was asked).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::result_large_err
)]

use std::time::{Duration, Instant};

use proto::v1 as pb;
use tests::daemon::Setup;
use tests::hsm::{Answer, Sim, SoftHsm, Voting, configure_pkcs11, fault, hsm_sim_module};

struct Chaos {
    v: Voting,
    // Kept alive: its directory holds the tokens.
    _hsm: SoftHsm,
    sim: Sim,
}

impl std::ops::Deref for Chaos {
    type Target = Voting;
    fn deref(&self) -> &Voting {
        &self.v
    }
}

impl std::ops::DerefMut for Chaos {
    fn deref_mut(&mut self) -> &mut Voting {
        &mut self.v
    }
}

/// The setup's Ed25519 consensus key moved into SoftHSM token(s), served
/// only from there, through hsm-sim.
async fn chaos(tokens: &[&str], timeout_ms: u64) -> Chaos {
    let mut setup = Setup::new();
    let hsm = SoftHsm::new(tokens);
    for t in tokens {
        hsm.import_setup_ed25519(&setup, t, "consensus");
    }
    setup.drop_file_key("ed25519");
    let sim = Sim::new(hsm.path());
    let module = hsm_sim_module();
    let names: Vec<String> = tokens.iter().map(|t| t.replace("tok-", "")).collect();
    let entries: Vec<(&str, &std::path::Path, &str)> = names
        .iter()
        .zip(tokens)
        .map(|(n, t)| (n.as_str(), module.as_path(), *t))
        .collect();
    configure_pkcs11(&setup, &hsm, timeout_ms, &entries);
    tests::hsm::add_key(&setup, "type = \"pkcs11\"\nlabel = \"consensus\"");
    setup.env = hsm.env();
    setup.env.push(sim.env());
    let key = setup.ed25519.clone();
    Chaos {
        v: Voting::start(setup, key, Duration::from_millis(timeout_ms)).await,
        _hsm: hsm,
        sim,
    }
}

impl Chaos {
    fn ops(&self, token: &str, outcome: &str) -> f64 {
        self.v.ops("pkcs11", Some(token), outcome)
    }

    fn up(&self, token: &str) -> f64 {
        self.v.up("pkcs11", token)
    }

    fn finish(self) {
        self.v.finish();
    }

    /// While the fault lasts: readiness red saying `why`, token `tok-a`
    /// down. Once it is cleared: signing again, ready, the token up.
    async fn down_then_back(&mut self, why: &str) {
        let (status, body) = self.ready();
        assert_eq!(status, 503, "{body}");
        assert!(body.contains(why), "{body}");
        assert_eq!(self.up("a"), 0.0);
        self.sim.clear();
        self.until_signed(Duration::from_secs(10)).await;
        assert_eq!(self.ready().0, 200);
        assert_eq!(self.up("a"), 1.0);
    }
}

fn count(answers: &[Answer], want: &Answer) -> usize {
    answers.iter().filter(|a| *a == want).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_invalidated_every_few_calls_are_reopened_and_retried() {
    let mut c = chaos(&["tok-a"], 2000).await;
    let mut f = fault("C_Sign");
    f.every = Some(7);
    f.close_session = true;
    f.rv = Some("CKR_SESSION_HANDLE_INVALID".into());
    c.sim.set(vec![f], Vec::new());
    let answers = c.heights(30).await;
    // Every closed session was re-opened and the sign retried: all signed.
    assert_eq!(count(&answers, &Answer::Signed), 60, "{answers:?}");
    let sign = c.sim.count("C_Sign");
    assert!(sign.faults >= 8, "{sign:?}");
    assert!(c.sim.count("C_OpenSession").calls >= 8);
    assert!(c.ops("a", "retried") >= 8.0);
    assert_eq!(c.ready().0, 200);
    c.sim.clear();
    assert_eq!(count(&c.heights(5).await, &Answer::Signed), 10);
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_errors_on_a_tenth_of_signs_are_retried_and_never_double_sign() {
    let mut c = chaos(&["tok-a"], 2000).await;
    let mut f = fault("C_Sign");
    f.probability = Some(0.1);
    f.rv = Some("CKR_DEVICE_ERROR".into());
    c.sim.set(vec![f], Vec::new());
    let answers = c.heights(50).await;
    let signed = count(&answers, &Answer::Signed);
    let unavailable = count(&answers, &Answer::Refused(pb::Reason::BackendUnavailable));
    assert_eq!(signed + unavailable, 100, "{answers:?}");
    // One retry turns p = 0.1 into ~0.01 per request (a tenth would be
    // ~10 failures in 100): the retry is doing its job.
    assert!(unavailable <= 8, "{unavailable} of 100 failed");
    let sign = c.sim.count("C_Sign");
    assert!(sign.faults >= 3, "{sign:?}");
    assert!(c.ops("a", "retried") >= 3.0);
    c.sim.clear();
    c.until_signed(Duration::from_secs(10)).await;
    assert_eq!(count(&c.heights(5).await, &Answer::Signed), 10);
    assert_eq!(c.ready().0, 200);
    assert_eq!(c.up("a"), 1.0);
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_ms_on_every_sign_is_slow_but_signs() {
    let mut c = chaos(&["tok-a"], 2000).await;
    let mut f = fault("C_Sign");
    f.latency_ms = 200;
    c.sim.set(vec![f], Vec::new());
    let answers = c.heights(4).await;
    assert_eq!(count(&answers, &Answer::Signed), 8);
    // The latency shows in the backend's histogram, and a slow token is
    // still a ready one.
    let series = "signer_backend_seconds_sum{backend=\"pkcs11\",name=\"a\"}";
    assert!(c.metric(series) >= 8.0 * 0.2, "{}", c.metric(series));
    assert_eq!(c.ready().0, 200);
    assert!(c.load.slowest >= Duration::from_millis(200));
    c.sim.clear();
    assert_eq!(count(&c.heights(3).await, &Answer::Signed), 6);
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_that_hangs_fails_at_the_timeout_and_the_pool_replaces_its_session() {
    let mut c = chaos(&["tok-a"], 1000).await;
    let mut f = fault("C_Sign");
    f.hang = true;
    f.after = 4;
    f.times = Some(1);
    c.sim.set(vec![f], Vec::new());
    let answers = c.heights(3).await;
    // The fifth sign hung: that request (and its conflicting retry's
    // fail-fast, if any) was refused, the rest signed.
    let unavailable = count(&answers, &Answer::Refused(pb::Reason::BackendUnavailable));
    assert_eq!(unavailable, 1, "{answers:?}");
    assert_eq!(c.ops("a", "timeout"), 1.0);
    assert!(c.daemon.log().contains("no answer within"));
    // The hung call is still inside SoftHSM; the pool signs on without it.
    c.until_signed(Duration::from_secs(10)).await;
    assert_eq!(c.ready().0, 200);
    // Ending the fault releases the hung call; its thread leaves.
    c.sim.clear();
    let started = Instant::now();
    while !c.daemon.log().contains("timed out has returned") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            c.daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count(&c.heights(3).await, &Answer::Signed), 6);

    // A token that hangs on every sign: each request is refused at the
    // timeout, readiness is red while it lasts, and it all clears after.
    let mut f = fault("C_Sign");
    f.hang = true;
    c.sim.set(vec![f], Vec::new());
    let answers = c.heights(1).await;
    assert_eq!(
        answers,
        vec![Answer::Refused(pb::Reason::BackendUnavailable); 2]
    );
    c.down_then_back("no answer within").await;
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_token_fails_fast_and_readiness_returns_when_it_is_back() {
    let mut c = chaos(&["tok-a"], 2000).await;
    assert_eq!(count(&c.heights(2).await, &Answer::Signed), 4);
    c.sim.set(Vec::new(), vec!["tok-a".into()]);
    // While it is out: refusals (not hangs), readiness red, the token down.
    let answers = c.heights(5).await;
    assert_eq!(
        count(&answers, &Answer::Refused(pb::Reason::BackendUnavailable)),
        10,
        "{answers:?}"
    );
    // Re-inserted: the sessions re-open by themselves.
    c.down_then_back("no token up").await;
    c.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_of_two_tokens_failing_for_good_every_request_is_signed_by_the_other() {
    let mut c = chaos(&["tok-a", "tok-b"], 2000).await;
    let mut f = fault("C_Sign");
    f.token = Some("tok-a".into());
    f.rv = Some("CKR_DEVICE_ERROR".into());
    c.sim.set(vec![f], Vec::new());
    let answers = c.heights(20).await;
    assert_eq!(count(&answers, &Answer::Signed), 40, "{answers:?}");
    assert_eq!(c.up("a"), 0.0);
    assert_eq!(c.up("b"), 1.0);
    // Ready: every key still has a token up.
    assert_eq!(c.ready().0, 200);
    // The failed token is not asked first on every request, only retried
    // now and then (half-open).
    let tried_a = c.sim.count("C_Sign").faults;
    assert!(
        (1..20).contains(&tried_a),
        "token a tried {tried_a} times for 40 signatures"
    );
    c.sim.clear();
    let started = Instant::now();
    while c.up("a") != 1.0 {
        assert!(started.elapsed() < Duration::from_secs(10));
        c.heights(1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.finish();
}
