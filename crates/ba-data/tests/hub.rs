//! The whole Hub path (hf-hub's protocol, the HF cache, parquet and PNG decoding) against a
//! small hub served on 127.0.0.1 by this test. Only one test touches the environment
//! (HF_ENDPOINT, HF_HOME, proxies); the other reads files. Needs the `hub` feature (default).

#![cfg(feature = "hub")]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ba_data::hub::{read_parquet, TEST_FILE, TRAIN_FILE};
use ba_data::Cifar10;
use tiny_http::{Header, Response, Server};

const REPO: &str = "test/cifar10-mini";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Serves `fixtures/hub` as the `main` revision of data set `REPO`, as the Hub's `resolve`
/// endpoint does (ranges, ETag, X-Repo-Commit); returns the address and the request counter.
fn serve_hub() -> (String, Arc<AtomicUsize>) {
    let server = Server::http("127.0.0.1:0").unwrap();
    let address = format!("http://{}", server.server_addr().to_ip().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        let prefix = format!("/datasets/{REPO}/resolve/main/");
        for request in server.incoming_requests() {
            counter.fetch_add(1, Ordering::SeqCst);
            let file = request.url().strip_prefix(&prefix).map(|f| fixtures().join("hub").join(f));
            let Some(body) = file.and_then(|f| std::fs::read(f).ok()) else {
                request.respond(Response::from_string("Entry not found").with_status_code(404)).unwrap();
                continue;
            };
            let range = request.headers().iter().find(|h| h.field.equiv("Range")).map(|h| h.value.to_string());
            let start: usize = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let end = if range.as_deref() == Some("bytes=0-0") { 0 } else { body.len() - 1 };
            let header = |k: &str, v: String| Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap();
            let response = Response::from_data(body[start..=end].to_vec())
                .with_status_code(206)
                .with_header(header("Content-Range", format!("bytes {start}-{end}/{}", body.len())))
                .with_header(header("ETag", format!("\"{:x}\"", body.len() * 7919)))
                .with_header(header("X-Repo-Commit", COMMIT.into()));
            request.respond(response).unwrap();
        }
    });
    (address, requests)
}

#[test]
fn downloads_caches_and_decodes_the_hub_layout() {
    let (endpoint, requests) = serve_hub();
    let home = std::env::temp_dir().join(format!("ba-data-hub-{}", std::process::id()));
    // SAFETY of the environment: this test binary holds one test, so nothing reads it concurrently.
    std::env::set_var("HF_ENDPOINT", &endpoint);
    std::env::set_var("HF_HOME", &home);
    for proxy in ["ALL_PROXY", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "http_proxy", "https_proxy"] {
        std::env::remove_var(proxy); // loopback must not go through a proxy
    }

    let binary = Cifar10::open(fixtures().join("cifar-10-batches-bin")).unwrap();
    let hub = Cifar10::open(format!("hf://{REPO}").as_str()).unwrap();
    assert_eq!(hub.train, binary.train, "hub images equal the binary records they were made from");
    assert_eq!(hub.test, binary.test);
    let served = requests.load(Ordering::SeqCst);
    assert!(served >= 4, "metadata and content of two files, got {served} requests");

    // The files sit in the standard HF cache layout, and a second open needs no network.
    let snapshot = home.join(format!("hub/datasets--test--cifar10-mini/snapshots/{COMMIT}"));
    assert!(snapshot.join(TRAIN_FILE).is_file() && snapshot.join(TEST_FILE).is_file());
    let again = Cifar10::open(format!("hf://{REPO}").as_str()).unwrap();
    assert_eq!(again.test, binary.test);
    assert_eq!(requests.load(Ordering::SeqCst), served, "the cache answered");

    let err = Cifar10::open("hf://test/missing").unwrap_err().to_string();
    assert!(err.contains("hf://test/missing@main/plain_text/train-00000-of-00001.parquet: download failed"), "{err}");
    assert!(err.contains("404") && err.contains("--data"), "{err}");

    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn broken_parquet_files_name_the_row_and_the_problem() {
    let bad = fixtures().join("hub-bad");
    let err = read_parquet(&bad.join("label11.parquet")).unwrap_err().to_string();
    assert!(err.ends_with("label11.parquet: row 2 has label 11, outside 0..10"), "{err}");
    let err = read_parquet(&bad.join("corrupt-png.parquet")).unwrap_err().to_string();
    assert!(err.contains("corrupt-png.parquet: row 5: ") && err.contains("PNG"), "{err}");
    let not_parquet = fixtures().join("cifar-10-batches-bin/test_batch.bin");
    let err = read_parquet(&not_parquet).unwrap_err().to_string();
    assert!(err.contains("test_batch.bin: not a readable parquet file"), "{err}");
}
