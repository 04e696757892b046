//! Argon2id on a few dedicated threads that reuse their memory.
//!
//! Each password hash or check needs Argon2id's memory (19 MiB with the default parameters).
//! Allocating it per check, on whatever thread is free, leaves the memory allocator holding a
//! freed area per thread it ever ran on: a login flood grew a server by more than a gigabyte. Here
//! a fixed number of worker threads each keep one memory area and reuse it for every check, so
//! hashing costs `workers × 19 MiB` of memory, once, whatever the load.
//!
//! Work waits in two bounded lines: users at an address they logged in from before, and everyone
//! else; a worker serves the first line first. A full line refuses new work at once (the caller
//! answers 429), and work whose caller has gone away is dropped unstarted.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq as _;
use tokio::sync::oneshot;

/// The largest Argon2 memory a stored hash may ask for (blocks of 1 KiB): 256 MiB.
const MAX_BLOCKS: usize = 256 * 1024;

enum Task {
    Hash(String),
    Verify { phc: String, password: String },
}

enum Outcome {
    Hashed(Result<String, String>),
    Verified(bool),
}

struct Job {
    task: Task,
    reply: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Lines {
    known: VecDeque<Job>,
    others: VecDeque<Job>,
}

struct Shared {
    lines: Mutex<Lines>,
    ready: Condvar,
    per_line: usize,
}

/// The pool is full: try again later.
#[derive(Debug)]
pub(crate) struct Busy;

/// Dedicated Argon2id threads (see the module documentation).
pub(crate) struct PasswordPool {
    shared: Arc<Shared>,
}

impl PasswordPool {
    /// `workers` threads; at most `per_line` jobs wait in each line.
    pub(crate) fn new(workers: usize, per_line: usize) -> Self {
        let shared = Arc::new(Shared {
            lines: Mutex::new(Lines::default()),
            ready: Condvar::new(),
            per_line,
        });
        for i in 0..workers.max(1) {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sluice-argon2-{i}"))
                .spawn(move || work(&shared));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        PasswordPool { shared }
    }

    fn submit(&self, task: Task, known: bool) -> Result<oneshot::Receiver<Outcome>, Busy> {
        let (reply, answer) = oneshot::channel();
        let mut lines = self.shared.lines.lock().unwrap_or_else(|p| p.into_inner());
        let line = if known {
            &mut lines.known
        } else {
            &mut lines.others
        };
        // Jobs whose callers went away free their places first.
        line.retain(|job| !job.reply.is_closed());
        if line.len() >= self.shared.per_line {
            return Err(Busy);
        }
        line.push_back(Job { task, reply });
        drop(lines);
        self.shared.ready.notify_one();
        Ok(answer)
    }

    /// An Argon2id PHC string of `password` (default parameters, a random salt).
    pub(crate) async fn hash(&self, password: &str) -> Result<Result<String, String>, Busy> {
        let answer = self.submit(Task::Hash(password.to_owned()), true)?;
        match answer.await {
            Ok(Outcome::Hashed(result)) => Ok(result),
            _ => Ok(Err("the password could not be hashed".into())),
        }
    }

    /// Whether `password` matches the PHC string `phc`; in the line of known users when `known`.
    pub(crate) async fn verify(
        &self,
        phc: &str,
        password: &str,
        known: bool,
    ) -> Result<bool, Busy> {
        let answer = self.submit(
            Task::Verify {
                phc: phc.to_owned(),
                password: password.to_owned(),
            },
            known,
        )?;
        match answer.await {
            Ok(Outcome::Verified(ok)) => Ok(ok),
            _ => Ok(false),
        }
    }
}

fn work(shared: &Shared) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = {
            let mut lines = shared.lines.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(job) = lines.known.pop_front().or_else(|| lines.others.pop_front()) {
                    break job;
                }
                lines = shared.ready.wait(lines).unwrap_or_else(|p| p.into_inner());
            }
        };
        if job.reply.is_closed() {
            continue;
        }
        let outcome = match &job.task {
            Task::Hash(password) => Outcome::Hashed(hash_with(&mut memory, password)),
            Task::Verify { phc, password } => {
                Outcome::Verified(verify_with(&mut memory, phc, password))
            }
        };
        let _ = job.reply.send(outcome);
    }
}

/// `memory` grown to `blocks` (kept for the next job).
fn area(memory: &mut Vec<Block>, blocks: usize) -> Option<&mut [Block]> {
    if blocks > MAX_BLOCKS {
        return None;
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    memory.get_mut(..blocks)
}

/// An Argon2id PHC string for `password`, hashed in `memory`.
pub(crate) fn hash_with(memory: &mut Vec<Block>, password: &str) -> Result<String, String> {
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt: [u8; 16] = rand::random();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let blocks = area(memory, params.block_count()).ok_or("too much memory")?;
    argon
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, blocks)
        .map_err(|e| format!("cannot hash the password: {e}"))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(&salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc`, computed in `memory`.
pub(crate) fn verify_with(memory: &mut Vec<Block>, phc: &str, password: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::new(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let Some(blocks) = area(memory, params.block_count()) else {
        return false;
    };
    let expected = expected.as_bytes();
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    argon
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, blocks)
        .is_ok()
        && bool::from(out.ct_eq(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_with_the_library_and_the_other_way_round() {
        let mut memory = Vec::new();
        let ours = hash_with(&mut memory, "correct horse").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        assert!(verify_with(&mut memory, &ours, "correct horse"));
        assert!(!verify_with(&mut memory, &ours, "wrong horse"));
        // The library's own hash and check agree with ours.
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        let theirs = Argon2::default()
            .hash_password_with_salt(b"battery staple", &[7u8; 16])
            .unwrap()
            .to_string();
        assert!(verify_with(&mut memory, &theirs, "battery staple"));
        assert!(!verify_with(&mut memory, &theirs, "battery stapl"));
        assert!(!verify_with(&mut memory, "garbage", "x"));
        // The area is kept, not grown, from one check to the next.
        assert_eq!(memory.len(), Params::default().block_count());
    }

    #[tokio::test]
    async fn a_full_line_refuses_and_abandoned_work_frees_its_place() {
        let pool = PasswordPool::new(1, 2);
        let phc = hash_with(&mut Vec::new(), "pw-123456").unwrap();
        assert!(pool.verify(&phc, "pw-123456", false).await.unwrap());
        // Fill the line with callers that go away at once: the places come back.
        for _ in 0..10 {
            let answer = pool.submit(
                Task::Verify {
                    phc: phc.clone(),
                    password: "x".into(),
                },
                false,
            );
            drop(answer);
        }
        assert!(pool.verify(&phc, "pw-123456", false).await.unwrap());
        assert!(pool.verify(&phc, "pw-123456", true).await.unwrap());
    }
}
