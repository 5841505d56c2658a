//! Hand-written histories with known verdicts, and the public API around them.

use std::time::Duration;

use cairn_lincheck::{
    check, read_jsonl, validate, write_jsonl, CheckResult, Input, Operation, Output,
};

const T: Duration = Duration::from_secs(10);

fn op(client: u64, key: &str, call: u64, ret: u64, input: Input, output: Output) -> Operation {
    Operation {
        client,
        key: key.to_string(),
        call_ns: call,
        return_ns: Some(ret),
        input,
        output,
    }
}

fn put(client: u64, call: u64, ret: u64, v: &str) -> Operation {
    op(
        client,
        "k",
        call,
        ret,
        Input::Put { value: v.into() },
        Output::Ok,
    )
}

fn get(client: u64, call: u64, ret: u64, v: Option<&str>) -> Operation {
    op(
        client,
        "k",
        call,
        ret,
        Input::Get,
        Output::Value(v.map(str::to_string)),
    )
}

fn del(client: u64, call: u64, ret: u64) -> Operation {
    op(client, "k", call, ret, Input::Delete, Output::Ok)
}

/// The same operation, but the client never learned its outcome.
fn unknown(mut o: Operation) -> Operation {
    o.return_ns = None;
    o.output = Output::Unknown;
    o
}

fn failed(mut o: Operation) -> Operation {
    o.output = Output::Failed;
    o
}

fn on_key(mut o: Operation, key: &str) -> Operation {
    o.key = key.to_string();
    o
}

#[track_caller]
fn assert_lin(h: &[Operation]) {
    let r = check(h, T);
    assert_eq!(r, CheckResult::Linearizable, "{r}");
}

/// Asserts non-linearizable on `key`; returns the explanation.
#[track_caller]
fn assert_not_lin(h: &[Operation], key: &str) -> String {
    match check(h, T) {
        CheckResult::NotLinearizable {
            key: k,
            explanation,
        } => {
            assert_eq!(k, key, "{explanation}");
            explanation
        }
        other => panic!("expected NotLinearizable, got {other}"),
    }
}

#[test]
fn empty_history_is_linearizable() {
    assert_lin(&[]);
}

#[test]
fn sequential_history_is_linearizable() {
    assert_lin(&[
        get(1, 0, 5, None),
        put(1, 10, 20, "a"),
        get(2, 30, 40, Some("a")),
        put(2, 50, 60, "b"),
        get(1, 70, 80, Some("b")),
        del(1, 90, 100),
        get(2, 110, 120, None),
    ]);
}

#[test]
fn stale_read_after_completed_write_is_rejected() {
    let e = assert_not_lin(
        &[
            put(1, 0, 10, "a"),
            put(2, 20, 30, "b"),
            get(3, 40, 50, Some("a")),
            get(3, 60, 70, Some("b")),
        ],
        "k",
    );
    // The witness is the two writes and the stale read, not the later good read.
    assert!(e.contains("put \"a\"") && e.contains("put \"b\""), "{e}");
    assert_eq!(e.matches("get").count(), 1, "{e}");
}

#[test]
fn read_of_value_never_written_is_rejected() {
    let e = assert_not_lin(&[put(1, 0, 10, "a"), get(2, 20, 30, Some("zzz"))], "k");
    assert!(e.contains("ever wrote") && e.contains("\"zzz\""), "{e}");
}

#[test]
fn clients_seeing_writes_in_different_orders_is_rejected() {
    // Both writes overlap all reads, so each client alone is fine; together
    // they disagree on the order of the writes.
    let h = [
        put(1, 0, 1000, "a"),
        put(2, 0, 1000, "b"),
        get(3, 10, 20, Some("a")),
        get(3, 30, 40, Some("b")),
        get(4, 10, 20, Some("b")),
        get(4, 30, 40, Some("a")),
    ];
    assert_lin(&h[..4]);
    assert_lin(&[h[0].clone(), h[1].clone(), h[4].clone(), h[5].clone()]);
    let e = assert_not_lin(&h, "k");
    assert_eq!(
        e.matches("client").count(),
        6,
        "all six ops are needed: {e}"
    );
}

#[test]
fn lost_acknowledged_write_is_rejected() {
    assert_not_lin(&[put(1, 0, 10, "a"), get(2, 20, 30, None)], "k");
    assert_not_lin(
        &[
            put(1, 0, 10, "a"),
            put(1, 20, 30, "b"),
            get(2, 40, 50, Some("a")),
        ],
        "k",
    );
}

#[test]
fn get_returning_old_value_after_delete_is_rejected() {
    assert_not_lin(
        &[
            put(1, 0, 10, "a"),
            del(1, 20, 30),
            get(2, 40, 50, Some("a")),
        ],
        "k",
    );
}

#[test]
fn concurrent_overlapping_ops_linearizable_in_some_order() {
    // Real-time order differs from the linearization order: put b is called
    // after put a but must take effect before it... and the reads pin it down.
    assert_lin(&[
        get(5, 0, 5, None),
        put(1, 0, 100, "a"),
        put(2, 10, 110, "b"),
        get(3, 20, 30, Some("b")),
        get(3, 40, 50, Some("a")),
        get(4, 45, 60, Some("a")),
        del(4, 70, 200),
        get(3, 120, 130, Some("a")),
        get(3, 210, 220, None),
    ]);
}

#[test]
fn concurrent_read_may_see_old_or_new_value() {
    for seen in [Some("a"), Some("b")] {
        assert_lin(&[
            put(1, 0, 10, "a"),
            put(1, 20, 40, "b"),
            get(2, 25, 35, seen),
        ]);
    }
    assert_not_lin(
        &[
            put(1, 0, 10, "a"),
            put(1, 20, 40, "b"),
            get(2, 25, 35, None),
        ],
        "k",
    );
}

#[test]
fn touching_intervals_count_as_concurrent() {
    // Returned at t=10, the next call at t=10: either order is allowed.
    assert_lin(&[put(1, 0, 10, "a"), get(2, 10, 20, None)]);
    assert_not_lin(&[put(1, 0, 10, "a"), get(2, 11, 20, None)], "k");
}

#[test]
fn unknown_outcome_put_that_later_appears_is_linearizable() {
    assert_lin(&[
        unknown(put(1, 0, 10, "a")),
        get(2, 20, 30, None),
        put(1, 40, 50, "b"), // the client moved on after the timeout
        get(2, 60, 70, Some("b")),
        get(2, 500, 600, Some("a")), // the lost put landed late
        get(3, 700, 800, Some("a")),
    ]);
}

#[test]
fn unknown_outcome_put_that_never_appears_is_linearizable() {
    assert_lin(&[
        unknown(put(1, 0, 10, "a")),
        get(2, 20, 30, None),
        get(2, 1000, 1100, None),
    ]);
}

#[test]
fn unknown_outcome_put_with_return_time_is_still_unknown() {
    let mut o = put(1, 0, 10, "a");
    o.output = Output::Unknown; // return_ns is set, but the outcome is unknown
    assert_lin(&[o, get(2, 20, 30, None), get(2, 40, 50, Some("a"))]);
}

#[test]
fn unknown_outcome_put_cannot_take_effect_twice() {
    // Once seen and then overwritten, it cannot reappear.
    assert_not_lin(
        &[
            unknown(put(1, 0, 10, "a")),
            get(2, 20, 30, Some("a")),
            put(2, 40, 50, "b"),
            get(2, 60, 70, Some("a")),
        ],
        "k",
    );
    // Nor disappear without a write.
    assert_not_lin(
        &[
            unknown(put(1, 0, 10, "a")),
            get(2, 20, 30, Some("a")),
            get(2, 40, 50, None),
        ],
        "k",
    );
}

#[test]
fn unknown_outcome_put_cannot_take_effect_before_its_call() {
    assert_not_lin(
        &[get(2, 0, 10, Some("a")), unknown(put(1, 20, 30, "a"))],
        "k",
    );
}

#[test]
fn unknown_outcome_get_and_delete() {
    assert_lin(&[
        put(1, 0, 10, "a"),
        unknown(get(2, 20, 30, Some("whatever"))),
        unknown(del(3, 40, 50)),
        get(2, 60, 70, Some("a")),
        get(2, 80, 90, None),
    ]);
    assert_not_lin(
        &[
            put(1, 0, 10, "a"),
            unknown(del(3, 40, 50)),
            get(2, 60, 70, None),
            get(2, 80, 90, Some("a")),
        ],
        "k",
    );
}

#[test]
fn failed_ops_are_dropped() {
    assert_lin(&[
        put(1, 0, 10, "a"),
        failed(put(2, 20, 30, "b")),
        failed(del(2, 40, 50)),
        get(1, 60, 70, Some("a")),
    ]);
    // A failed put's value showing up is a violation: it must not have taken effect.
    let e = assert_not_lin(
        &[
            put(1, 0, 10, "a"),
            failed(put(2, 20, 30, "b")),
            get(1, 60, 70, Some("b")),
        ],
        "k",
    );
    assert!(e.contains("1 failed"), "{e}");
    // A failed get's output is irrelevant.
    assert_lin(&[put(1, 0, 10, "a"), failed(get(2, 20, 30, Some("nonsense")))]);
}

#[test]
fn keys_are_checked_independently() {
    // Each key alone is linearizable, and so is the whole history, although
    // the interleaving across keys would not be if this were one register.
    assert_lin(&[
        on_key(put(1, 0, 10, "a"), "x"),
        on_key(put(1, 20, 30, "b"), "y"),
        on_key(get(2, 40, 50, Some("a")), "x"),
        on_key(get(2, 60, 70, Some("b")), "y"),
        on_key(get(3, 40, 50, None), "z"),
    ]);
    // A value written to one key and read from another is a violation on the reader's key.
    assert_not_lin(
        &[
            on_key(put(1, 0, 10, "a"), "x"),
            on_key(get(2, 20, 30, Some("a")), "y"),
            on_key(get(2, 20, 30, Some("a")), "x"),
        ],
        "y",
    );
    // The first bad key (in key order) is reported.
    assert_not_lin(
        &[
            on_key(put(1, 0, 10, "a"), "b"),
            on_key(get(2, 20, 30, None), "b"),
            on_key(put(1, 0, 10, "a"), "c"),
            on_key(get(2, 20, 30, None), "c"),
        ],
        "b",
    );
}

#[test]
fn repeated_values_are_handled() {
    assert_lin(&[
        put(1, 0, 10, "a"),
        put(1, 20, 30, "b"),
        put(1, 40, 50, "a"),
        get(2, 60, 70, Some("a")),
    ]);
    assert_not_lin(
        &[
            put(1, 0, 10, "a"),
            put(1, 20, 30, "b"),
            get(2, 35, 38, Some("a")),
            put(1, 40, 50, "a"),
        ],
        "k",
    );
}

#[test]
fn malformed_ops_are_reported_not_accepted() {
    let bad = op(1, "k", 0, 10, Input::Get, Output::Ok);
    assert!(validate(std::slice::from_ref(&bad)).is_err());
    let e = assert_not_lin(&[bad], "k");
    assert!(e.starts_with("malformed operation"), "{e}");
    let backwards = op(1, "k", 10, 5, Input::Delete, Output::Ok);
    assert!(validate(&[backwards]).is_err());
}

#[test]
fn jsonl_format() {
    let text = r#"
# a comment, then blank lines are skipped

{"client":1,"key":"k1","call_ns":1000,"return_ns":2000,"input":{"type":"put","value":"v1"},"output":{"type":"ok"}}
{"client":2,"key":"k1","call_ns":1500,"return_ns":2500,"input":{"type":"get"},"output":{"type":"value","value":"v1"}}
{"client":3,"key":"k1","call_ns":1600,"return_ns":null,"input":{"type":"delete"},"output":{"type":"unknown"}}
{"client":3,"key":"k1","call_ns":3000,"input":{"type":"get"},"output":{"type":"value","value":null}}
{"client":4,"key":"k2","call_ns":3000,"return_ns":3100,"input":{"type":"put","value":"x"},"output":{"type":"failed"}}
"#;
    let h = read_jsonl(text.as_bytes()).unwrap();
    assert_eq!(h.len(), 5);
    assert_eq!(h[0].input, Input::Put { value: "v1".into() });
    assert_eq!(h[1].output, Output::Value(Some("v1".into())));
    assert_eq!(h[2].return_ns, None);
    assert_eq!(h[3].return_ns, None); // missing field = unknown return time
    assert_eq!(h[3].output, Output::Value(None));
    assert_eq!(h[4].output, Output::Failed);
    assert_lin(&h);

    let mut buf = Vec::new();
    write_jsonl(&mut buf, &h).unwrap();
    assert_eq!(read_jsonl(buf.as_slice()).unwrap(), h);
    let first = String::from_utf8(buf)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        first,
        r#"{"client":1,"key":"k1","call_ns":1000,"return_ns":2000,"input":{"type":"put","value":"v1"},"output":{"type":"ok"}}"#
    );
}

#[test]
fn jsonl_errors_name_the_line() {
    let err = read_jsonl("\n{\"client\":1}\n".as_bytes()).unwrap_err();
    assert!(err.to_string().starts_with("line 2:"), "{err}");
    let err = read_jsonl(
        r#"{"client":1,"key":"k","call_ns":5,"return_ns":1,"input":{"type":"get"},"output":{"type":"value","value":null}}"#
            .as_bytes(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("before call_ns"), "{err}");
}

#[test]
fn binary_exit_codes() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, h: &[Operation]| {
        let path = dir.path().join(name);
        write_jsonl(std::fs::File::create(&path).unwrap(), h).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_cairn-lincheck"))
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, out) = run("ok.jsonl", &[put(1, 0, 10, "a"), get(2, 20, 30, Some("a"))]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("linearizable"), "{out}");
    let (code, out) = run("bad.jsonl", &[put(1, 0, 10, "a"), get(2, 20, 30, None)]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("NOT linearizable"), "{out}");

    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, "not json\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cairn-lincheck"))
        .arg(&garbage)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_cairn-lincheck"))
        .arg(dir.path().join("missing.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
