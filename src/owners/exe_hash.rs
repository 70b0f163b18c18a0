//! The SHA-256 of a process's executable (`exe_sha256`), computed off the
//! scrape path and cached per file identity.
//!
//! A name or a path says what a process claims to be; the hash says which
//! bytes it runs, so an allow rule can trust one build (`sha256=HEX`) and a
//! responder can look the file up elsewhere.
//!
//! - The file is reached through `/proc/PID/exe`, which opens the very file
//!   the process runs, even when it was deleted or replaced on disk since.
//! - The cache key is the file's identity: device, inode, size and
//!   modification time. A rebuilt or upgraded binary is a new identity and
//!   is hashed again; an unchanged one, however big and however many
//!   processes run it, is hashed once. The cache holds at most
//!   [`MAX_CACHED`] identities, the oldest going first.
//! - A collection never hashes. [`ExeHashes::lookup`] costs one `stat` and
//!   a map lookup; an identity not hashed yet is handed (opened, so the
//!   worker can read it after the process exits) to one worker thread
//!   through a bounded queue of [`QUEUE`] jobs, at most a budget of new
//!   files per collection ([`NEW_FILES_PER_COLLECTION`]), and the label is
//!   empty until a later collection finds the hash in the cache.
//! - The event trail, which runs on its own thread, may wait for a hash:
//!   [`ExeHashes::hash_file`] hashes a file it opened while the process
//!   lived, on the caller's thread, through the same cache.
//!
//! A file modified while it was read (its identity changed) is not cached:
//! its hash would name no identity. Reading needs the same access as
//! reading `/proc/PID/exe` (root, or CAP_SYS_PTRACE and read permission).

use ring::digest::{Context, SHA256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

/// Identities whose hash is remembered.
pub const MAX_CACHED: usize = 4096;
/// Files waiting for the worker.
pub const QUEUE: usize = 32;
/// New files one collection may hand to the worker.
pub const NEW_FILES_PER_COLLECTION: usize = 8;
/// Read size while hashing.
const CHUNK: usize = 64 * 1024;

/// What makes two opens of an executable the same bytes, as far as the
/// file system says without reading them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

impl FileIdentity {
    #[cfg(unix)]
    pub fn of(metadata: &std::fs::Metadata) -> Option<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        metadata.is_file().then(|| FileIdentity {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
        })
    }

    #[cfg(not(unix))]
    pub fn of(_metadata: &std::fs::Metadata) -> Option<FileIdentity> {
        None
    }
}

/// Hashes known, and hashes under way.
#[derive(Default)]
struct Cache {
    /// identity -> lower-case hex SHA-256.
    done: HashMap<FileIdentity, Arc<str>>,
    /// Insertion order of `done`, for eviction.
    order: VecDeque<FileIdentity>,
    /// Handed to the worker, not finished.
    pending: HashSet<FileIdentity>,
}

impl Cache {
    fn insert(&mut self, identity: FileIdentity, hex: Arc<str>) {
        self.pending.remove(&identity);
        if self.done.insert(identity, hex).is_none() {
            self.order.push_back(identity);
            while self.order.len() > MAX_CACHED {
                if let Some(oldest) = self.order.pop_front() {
                    self.done.remove(&oldest);
                }
            }
        }
    }
}

/// One file for the worker: opened while its process lived.
struct Job {
    file: File,
    identity: FileIdentity,
}

/// The shared hash cache and its worker; clones share both. The worker
/// stops when the last clone is dropped.
#[derive(Clone)]
pub struct ExeHashes {
    cache: Arc<Mutex<Cache>>,
    jobs: SyncSender<Job>,
}

impl ExeHashes {
    /// Starts the worker thread.
    pub fn start() -> ExeHashes {
        let cache = Arc::new(Mutex::new(Cache::default()));
        let (jobs, queue) = sync_channel(QUEUE);
        let worker_cache = Arc::clone(&cache);
        std::thread::Builder::new()
            .name("exe-sha256".into())
            .spawn(move || {
                crate::kernel::priority::run_in_background();
                work(&queue, &worker_cache)
            })
            .expect("spawn the exe hash worker");
        ExeHashes { cache, jobs }
    }

    /// The hash of the file `exe` (a `/proc/PID/exe` link) names, if it is
    /// known. If not, the file is handed to the worker when `budget` allows
    /// (one is taken from it) and the answer is `None` until it is done.
    pub fn lookup(&self, exe: &Path, budget: &mut usize) -> Option<Arc<str>> {
        let identity = FileIdentity::of(&std::fs::metadata(exe).ok()?)?;
        {
            let cache = self.lock();
            if let Some(hex) = cache.done.get(&identity) {
                return Some(Arc::clone(hex));
            }
            if cache.pending.contains(&identity) || *budget == 0 {
                return None;
            }
        }
        let file = File::open(exe).ok()?;
        // The file opened may differ from the one stat'ed (replaced between).
        if FileIdentity::of(&file.metadata().ok()?) != Some(identity) {
            return None;
        }
        *budget -= 1;
        self.lock().pending.insert(identity);
        match self.jobs.try_send(Job { file, identity }) {
            Ok(()) => {}
            // Full: a later collection asks again.
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.lock().pending.remove(&job.identity);
            }
        }
        None
    }

    /// The hash of an open executable, computed now on the caller's thread
    /// if the cache does not have it. `None` when it cannot be read.
    pub fn hash_file(&self, mut file: File) -> Option<Arc<str>> {
        let identity = FileIdentity::of(&file.metadata().ok()?)?;
        if let Some(hex) = self.lock().done.get(&identity) {
            return Some(Arc::clone(hex));
        }
        let hex = sha256_hex(&mut file).ok()?;
        if FileIdentity::of(&file.metadata().ok()?) == Some(identity) {
            self.lock().insert(identity, Arc::clone(&hex));
        }
        Some(hex)
    }

    /// How many identities are cached (for tests).
    pub fn cached(&self) -> usize {
        self.lock().done.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The worker: hashes each job's file, caches it if it did not change.
fn work(queue: &Receiver<Job>, cache: &Mutex<Cache>) {
    while let Ok(Job { mut file, identity }) = queue.recv() {
        let hashed = sha256_hex(&mut file);
        let unchanged = file
            .metadata()
            .ok()
            .and_then(|metadata| FileIdentity::of(&metadata))
            == Some(identity);
        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        match hashed {
            Ok(hex) if unchanged => cache.insert(identity, hex),
            _ => {
                cache.pending.remove(&identity);
            }
        }
    }
}

/// Lower-case hex SHA-256 of everything `file` holds from its start.
pub fn sha256_hex(file: &mut File) -> std::io::Result<Arc<str>> {
    use std::io::Seek;
    file.rewind()?;
    let mut context = Context::new(&SHA256);
    let mut buffer = vec![0u8; CHUNK];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => context.update(&buffer[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    let digest = context.finish();
    let mut hex = String::with_capacity(64);
    for byte in digest.as_ref() {
        hex.push_str(&format!("{byte:02x}"));
    }
    Ok(hex.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, Instant};

    fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("exe-hash-{}-{name}", std::process::id()));
        let mut file = File::create(&path).unwrap();
        file.write_all(bytes).unwrap();
        path
    }

    #[test]
    fn hashes_match_known_digests() {
        let empty = temp_file("empty", b"");
        let abc = temp_file("abc", b"abc");
        let hashes = ExeHashes::start();
        assert_eq!(
            &*hashes.hash_file(File::open(&empty).unwrap()).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            &*hashes.hash_file(File::open(&abc).unwrap()).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hashes.cached(), 2);
        let _ = std::fs::remove_file(empty);
        let _ = std::fs::remove_file(abc);
    }

    #[test]
    fn a_lookup_hands_the_file_to_the_worker_once_and_finds_it_later() {
        let path = temp_file("lookup", &vec![7u8; 3 * CHUNK + 5]);
        let hashes = ExeHashes::start();
        let mut budget = 1;
        assert_eq!(hashes.lookup(&path, &mut budget), None);
        assert_eq!(budget, 0);
        // Spent budget: a second file would wait for the next collection.
        let deadline = Instant::now() + Duration::from_secs(10);
        let found = loop {
            if let Some(hex) = hashes.lookup(&path, &mut 0) {
                break hex;
            }
            assert!(Instant::now() < deadline, "the worker never hashed it");
            std::thread::sleep(Duration::from_millis(5));
        };
        let direct = sha256_hex(&mut File::open(&path).unwrap()).unwrap();
        assert_eq!(found, direct);
        // A changed file is a new identity: not known, hashed again.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"more")
            .unwrap();
        assert_eq!(hashes.lookup(&path, &mut 0), None);
        let _ = std::fs::remove_file(path);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_executable_is_hashed_through_proc() {
        let hashes = ExeHashes::start();
        let via_proc = File::open("/proc/self/exe").unwrap();
        let hex = hashes.hash_file(via_proc).unwrap();
        let direct = sha256_hex(&mut File::open(std::env::current_exe().unwrap()).unwrap());
        assert_eq!(hex, direct.unwrap());
        assert_eq!(
            hashes.lookup(Path::new("/proc/self/exe"), &mut 0),
            Some(hex)
        );
    }
}
