//! The load test: 50 connections at once, for a fixed time, running small
//! queries, `COPY FROM STDIN` and a large streamed `SELECT`; no error is
//! allowed, every row loaded must be there, and memory must stay bounded.
//!
//! CI runs it for 5 seconds against an in-process server. For the figures in
//! `docs/benchmarks.md`, run it against a release `tessera serve`:
//! `TESSERA_LOAD_ADDR=127.0.0.1:5433 TESSERA_LOAD_PASSWORD=… TESSERA_LOAD_SECONDS=30 \
//!  cargo test -p tessera-tests --test it wire::load -- --nocapture`
//! (the server's memory is then read from `/proc/<TESSERA_LOAD_PID>/status`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};

use super::{PASSWORD, TestServer, rss, runtime};

const CONNECTIONS: usize = 50;
const COPIERS: usize = 5;
const STREAMERS: usize = 5;
const BIG_ROWS: i64 = 200_000;
const COPY_ROWS: usize = 1_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
fn fifty_connections_of_mixed_work() {
    let seconds: u64 = std::env::var("TESSERA_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let external = std::env::var("TESSERA_LOAD_ADDR").ok();
    let local = if external.is_none() {
        Some(TestServer::with(|c| c.max_connections = CONNECTIONS + 5))
    } else {
        None
    };
    let (conninfo, pid) = match (&external, &local) {
        (Some(addr), _) => {
            let (host, port) = addr.rsplit_once(':').unwrap();
            let password = std::env::var("TESSERA_LOAD_PASSWORD").unwrap();
            let pid = std::env::var("TESSERA_LOAD_PID")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(std::process::id);
            (
                format!("host={host} port={port} user=tessera password={password} dbname=tessera"),
                pid,
            )
        }
        (None, Some(s)) => (s.conninfo("tessera", PASSWORD), std::process::id()),
        _ => unreachable!(),
    };
    let rt = runtime();
    rt.block_on(async move {
        let connect = || async {
            let (c, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(async move {
                let _ = conn.await;
            });
            c
        };
        let setup = connect().await;
        setup
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS load_big; DROP TABLE IF EXISTS load_small; DROP TABLE IF EXISTS load_ingest;
                 CREATE TABLE load_big (id BIGINT NOT NULL, email TEXT, amount DOUBLE, channel TEXT);
                 INSERT INTO load_big SELECT value, 'person' || value || '@example.com', value * 0.5,
                   CASE WHEN value % 3 = 0 THEN 'web' WHEN value % 3 = 1 THEN 'app' ELSE 'store' END
                   FROM generate_series(1, {BIG_ROWS});
                 CREATE TABLE load_small (id BIGINT NOT NULL, name TEXT);
                 INSERT INTO load_small SELECT value, 'name ' || value FROM generate_series(1, 1000);
                 CREATE TABLE load_ingest (worker BIGINT NOT NULL, n BIGINT NOT NULL, payload TEXT);"
            ))
            .await
            .unwrap();
        let before = rss(pid);
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(before));
        let sampler = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss(pid), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let mut clients = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            clients.push(connect().await);
        }
        let started = Instant::now();
        let deadline = started + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for (i, c) in clients.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut rows = 0u64;
                let mut copied = 0u64;
                let mut round = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if i < COPIERS {
                        let sink = c
                            .copy_in("COPY load_ingest FROM STDIN")
                            .await
                            .unwrap();
                        futures::pin_mut!(sink);
                        let mut data = String::with_capacity(COPY_ROWS * 24);
                        for n in 0..COPY_ROWS {
                            data.push_str(&format!("{i}\t{round}\tpayload {n}\n"));
                        }
                        sink.send(bytes::Bytes::from(data)).await.unwrap();
                        copied += sink.as_mut().finish().await.unwrap();
                    } else if i < COPIERS + STREAMERS {
                        let stream = c
                            .query_raw("SELECT id, email, amount, channel FROM load_big", Vec::<i64>::new())
                            .await
                            .unwrap();
                        futures::pin_mut!(stream);
                        let mut n = 0u64;
                        while let Some(row) = stream.next().await {
                            row.unwrap();
                            n += 1;
                        }
                        assert_eq!(n, BIG_ROWS as u64);
                        rows += n;
                    } else {
                        let id = (round as i64 * 7 + i as i64) % 1000 + 1;
                        let r = if round.is_multiple_of(2) {
                            c.query_one("SELECT name FROM load_small WHERE id = $1", &[&id])
                                .await
                                .unwrap()
                        } else {
                            c.query_one(
                                "SELECT count(*) FROM load_big WHERE channel = 'web' AND id < $1",
                                &[&(id * 100)],
                            )
                            .await
                            .unwrap()
                        };
                        assert_eq!(r.len(), 1);
                        rows += 1;
                    }
                    latencies.push(t.elapsed());
                    round += 1;
                }
                (i, latencies, rows, copied)
            }));
        }
        let mut small = Vec::new();
        let (mut streamed, mut copied, mut small_count, mut copies, mut streams) = (0, 0, 0, 0, 0);
        for t in tasks {
            let (i, lat, rows, c) = t.await.unwrap();
            if i < COPIERS {
                copied += c;
                copies += lat.len();
            } else if i < COPIERS + STREAMERS {
                streamed += rows;
                streams += lat.len();
            } else {
                small_count += lat.len();
                small.extend(lat);
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        sampler.await.unwrap();
        // Every acknowledged COPY row is there.
        let n: i64 = setup
            .query_one("SELECT count(*) FROM load_ingest", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n as u64, copied);
        small.sort();
        let peak = peak.load(Ordering::Relaxed);
        println!(
            "load: {CONNECTIONS} connections for {elapsed:.1} s: {:.0} small queries/s (p50 {:.2} ms, p99 {:.2} ms), \
             {:.0} COPY rows/s ({copies} COPYs), {:.0} streamed rows/s ({streams} SELECTs of {BIG_ROWS} rows); \
             memory {:.0} MiB before, peak {:.0} MiB",
            small_count as f64 / elapsed,
            percentile(&small, 0.5).as_secs_f64() * 1e3,
            percentile(&small, 0.99).as_secs_f64() * 1e3,
            copied as f64 / elapsed,
            streamed as f64 / elapsed,
            before as f64 / (1 << 20) as f64,
            peak as f64 / (1 << 20) as f64,
        );
        assert!(small_count > 0 && copies > 0 && streams > 0);
        // Bounded: the streamed results (5 x 200 000 rows at a time) are
        // never gathered; the whole process (clients included) stays
        // within 1.5 GiB of where it started.
        assert!(
            peak < before + (3 << 29),
            "memory grew from {before} to {peak} bytes"
        );
    });
    drop(local);
}
