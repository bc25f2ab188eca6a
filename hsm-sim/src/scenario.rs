//! Scenario files and fault decisions (safe code; the C shims call in here).
//!
//! A scenario is JSON:
//!
//! ```json
//! {
//!   "module": "/usr/lib/softhsm/libsofthsm2.so",
//!   "counters": "/tmp/run/counters.json",
//!   "removed_tokens": ["hsm-a"],
//!   "faults": [
//!     {"function": "C_Sign", "latency_ms": 200},
//!     {"function": "C_Sign", "rv": "CKR_DEVICE_ERROR", "probability": 0.1},
//!     {"function": "C_Sign", "rv": "CKR_SESSION_HANDLE_INVALID", "every": 25, "close_session": true},
//!     {"function": "C_Sign", "hang": true, "after": 3, "times": 1, "token": "hsm-b"}
//!   ]
//! }
//! ```
//!
//! - `module` (required): the real PKCS#11 module every call goes to. Read
//!   once, when the module is loaded.
//! - `counters`: a file rewritten after every intercepted call with
//!   `{"C_Sign": {"calls": n, "faults": m}, …}`.
//! - `removed_tokens`: token labels that are "pulled out": the slot list
//!   leaves them out, `C_OpenSession`/`C_GetTokenInfo` answer
//!   `CKR_TOKEN_NOT_PRESENT`, calls on their sessions close the real session
//!   and answer `CKR_DEVICE_REMOVED`. Taking a label out of the list
//!   re-inserts the token (its old sessions stay gone, as with real devices).
//! - `faults`, each for one `function` (or `"*"`), optionally one `token`
//!   label. Of the calls that match, the first `after` pass untouched; then
//!   every `every`-th (default: each) fires, with `probability` (default 1),
//!   at most `times` times. A firing fault sleeps `latency_ms` (plus up to
//!   `latency_jitter_ms` at random), hangs if `hang` (until the scenario file
//!   changes, or `hang_ms`, default 10 minutes), closes the caller's real
//!   session if `close_session`, and returns `rv` if given (otherwise the
//!   call goes on to the real module).
//!
//! For `C_Sign`, `C_Encrypt` and `C_Decrypt`, only calls with an output
//! buffer count: the length query before them is part of the same
//! operation. When such a call is failed by a fault, the real operation is
//! completed (and its result dropped) first, as a real token ends an
//! operation that fails.
//!
//! Counters and the `after`/`every`/`times` counts restart when the file
//! changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// The environment variable naming the scenario file.
pub const ENV: &str = "HSM_SIM_SCENARIO";

/// A scenario file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The real module.
    pub module: PathBuf,
    /// Where call counters are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<PathBuf>,
    /// Token labels currently removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_tokens: Vec<String>,
    /// Faults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fault>,
}

/// One fault rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// `C_Sign`, … or `*`.
    pub function: String,
    /// Only calls on this token (by label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Matching calls that pass untouched first.
    #[serde(default)]
    pub after: u64,
    /// Fire on every n-th matching call after that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// Fire with this probability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Fire at most this many times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// Added latency.
    #[serde(default)]
    pub latency_ms: u64,
    /// Random extra latency, up to this.
    #[serde(default)]
    pub latency_jitter_ms: u64,
    /// Return this `CKR_*` (name or number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rv: Option<String>,
    /// Hang.
    #[serde(default)]
    pub hang: bool,
    /// How long a hang lasts at most (default 10 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hang_ms: Option<u64>,
    /// Close the caller's real session.
    #[serde(default)]
    pub close_session: bool,
}

impl Scenario {
    /// Writes the scenario atomically (for tests changing it while a signer runs).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, json)?;
        std::fs::rename(tmp, path)
    }
}

/// Per-function counts, as written to the counters file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Intercepted calls.
    pub calls: u64,
    /// Calls a fault fired on.
    pub faults: u64,
}

/// Reads a counters file (for tests).
pub fn read_counters(path: &Path) -> BTreeMap<String, Count> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// What the shim does after [`decide`] (which has already slept or hung).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decision {
    /// Return this instead of the real result.
    pub rv: Option<u64>,
    /// Close the caller's real session first.
    pub close_session: bool,
}

struct Rule {
    fault: Fault,
    rv: Option<u64>,
    seen: u64,
    fired: u64,
}

struct State {
    path: PathBuf,
    modified: Option<SystemTime>,
    checked: Instant,
    /// Bumped on every reload: hangs end when it changes.
    generation: u64,
    scenario: Scenario,
    rules: Vec<Rule>,
    counts: BTreeMap<String, Count>,
    rng: u64,
}

fn state() -> Option<MutexGuard<'static, State>> {
    static STATE: OnceLock<Option<Mutex<State>>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let path = PathBuf::from(std::env::var_os(ENV)?);
            let mut s = State {
                path,
                modified: None,
                checked: Instant::now(),
                generation: 0,
                scenario: Scenario::default(),
                rules: Vec::new(),
                counts: BTreeMap::new(),
                rng: seed(),
            };
            if let Err(e) = s.reload() {
                eprintln!("hsm-sim: {e}");
                return None;
            }
            Some(Mutex::new(s))
        })
        .as_ref()
        .and_then(|m| m.lock().ok())
}

fn seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (t as u64) ^ u64::from(std::process::id()).rotate_left(32) | 1
}

impl State {
    fn reload(&mut self) -> Result<(), String> {
        let bytes =
            std::fs::read(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let scenario: Scenario =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let mut rules = Vec::new();
        for f in &scenario.faults {
            let rv = match &f.rv {
                Some(name) => Some(rv_value(name).ok_or_else(|| format!("unknown rv {name}"))?),
                None => None,
            };
            rules.push(Rule {
                fault: f.clone(),
                rv,
                seen: 0,
                fired: 0,
            });
        }
        self.modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        self.scenario = scenario;
        self.rules = rules;
        self.counts.clear();
        self.generation += 1;
        Ok(())
    }

    /// Re-reads the file if it changed (checked at most every 5 ms).
    fn refresh(&mut self) {
        if self.checked.elapsed() < Duration::from_millis(5) {
            return;
        }
        self.checked = Instant::now();
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified != self.modified
            && let Err(e) = self.reload()
        {
            // A half-written file: keep the old scenario, try again later.
            eprintln!("hsm-sim: {e}");
        }
    }

    fn random(&mut self) -> f64 {
        // xorshift64: plenty for fault dice.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn write_counters(&self) {
        if let Some(path) = &self.scenario.counters
            && let Ok(json) = serde_json::to_vec(&self.counts)
        {
            let tmp = path.with_extension("tmp");
            if std::fs::write(&tmp, json).is_ok() {
                let _ = std::fs::rename(tmp, path);
            }
        }
    }
}

/// The real module's path (from the scenario), or why there is none.
pub fn module() -> Result<PathBuf, String> {
    match state() {
        Some(s) => Ok(s.scenario.module.clone()),
        None => Err(format!("{ENV} does not name a readable scenario file")),
    }
}

/// True while the token with this label is "removed".
pub fn removed(label: &str) -> bool {
    state().is_some_and(|mut s| {
        s.refresh();
        s.scenario.removed_tokens.iter().any(|t| t == label)
    })
}

/// Counts a call of `function` (on the token `token`, if known), applies the
/// latency or hang of the faults that fire, and says what else to do.
pub fn decide(function: &'static str, token: Option<&str>) -> Decision {
    let Some(mut s) = state() else {
        return Decision::default();
    };
    s.refresh();
    let mut decision = Decision::default();
    let mut sleep = Duration::ZERO;
    let mut hang: Option<Duration> = None;
    let mut fired_any = false;
    let mut dice = Vec::new();
    for _ in 0..s.rules.len() {
        dice.push(s.random());
    }
    for (rule, die) in s.rules.iter_mut().zip(dice) {
        let f = &rule.fault;
        if f.function != "*" && f.function != function {
            continue;
        }
        if let Some(t) = &f.token
            && Some(t.as_str()) != token
        {
            continue;
        }
        rule.seen += 1;
        if rule.seen <= f.after {
            continue;
        }
        if let Some(every) = f.every
            && every > 0
            && (rule.seen - f.after) % every != 0
        {
            continue;
        }
        if f.probability.is_some_and(|p| die >= p) {
            continue;
        }
        if f.times.is_some_and(|t| rule.fired >= t) {
            continue;
        }
        rule.fired += 1;
        fired_any = true;
        let jitter = if f.latency_jitter_ms > 0 {
            (die * f.latency_jitter_ms as f64) as u64
        } else {
            0
        };
        sleep += Duration::from_millis(f.latency_ms + jitter);
        if f.hang {
            hang = Some(Duration::from_millis(f.hang_ms.unwrap_or(600_000)));
        }
        decision.close_session |= f.close_session;
        if decision.rv.is_none() {
            decision.rv = rule.rv;
        }
    }
    let count = s.counts.entry(function.to_owned()).or_default();
    count.calls += 1;
    if fired_any {
        count.faults += 1;
    }
    s.write_counters();
    let generation = s.generation;
    drop(s);
    if !sleep.is_zero() {
        std::thread::sleep(sleep);
    }
    if let Some(limit) = hang {
        let started = Instant::now();
        while started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(20));
            let changed = state().is_none_or(|mut s| {
                s.refresh();
                s.generation != generation
            });
            if changed {
                break;
            }
        }
    }
    decision
}

/// `CKR_DEVICE_ERROR` or `0x30` → its value.
pub fn rv_value(name: &str) -> Option<u64> {
    use cryptoki_sys::*;
    if let Some(hex) = name.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok();
    }
    Some(match name {
        "CKR_OK" => CKR_OK,
        "CKR_GENERAL_ERROR" => CKR_GENERAL_ERROR,
        "CKR_FUNCTION_FAILED" => CKR_FUNCTION_FAILED,
        "CKR_DEVICE_ERROR" => CKR_DEVICE_ERROR,
        "CKR_DEVICE_MEMORY" => CKR_DEVICE_MEMORY,
        "CKR_DEVICE_REMOVED" => CKR_DEVICE_REMOVED,
        "CKR_TOKEN_NOT_PRESENT" => CKR_TOKEN_NOT_PRESENT,
        "CKR_SESSION_CLOSED" => CKR_SESSION_CLOSED,
        "CKR_SESSION_HANDLE_INVALID" => CKR_SESSION_HANDLE_INVALID,
        "CKR_USER_NOT_LOGGED_IN" => CKR_USER_NOT_LOGGED_IN,
        "CKR_PIN_INCORRECT" => CKR_PIN_INCORRECT,
        "CKR_KEY_HANDLE_INVALID" => CKR_KEY_HANDLE_INVALID,
        "CKR_OPERATION_NOT_INITIALIZED" => CKR_OPERATION_NOT_INITIALIZED,
        "CKR_CRYPTOKI_NOT_INITIALIZED" => CKR_CRYPTOKI_NOT_INITIALIZED,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rv_names_resolve() {
        assert_eq!(rv_value("CKR_DEVICE_ERROR"), Some(0x30));
        assert_eq!(rv_value("CKR_SESSION_HANDLE_INVALID"), Some(0xB3));
        assert_eq!(rv_value("0x32"), Some(0x32));
        assert_eq!(rv_value("CKR_NONSENSE"), None);
    }

    #[test]
    fn scenarios_round_trip_and_refuse_unknown_fields() {
        let s = Scenario {
            module: "/m.so".into(),
            faults: vec![Fault {
                function: "C_Sign".into(),
                every: Some(3),
                rv: Some("CKR_DEVICE_ERROR".into()),
                ..Fault::default()
            }],
            ..Scenario::default()
        };
        let json = serde_json::to_string(&s).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Scenario>(&json).ok(), Some(s));
        assert!(serde_json::from_str::<Scenario>(r#"{"module":"/m","fault":[]}"#).is_err());
    }
}
