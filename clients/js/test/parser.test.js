// The SSE parser against the WHATWG rules and the tricky inputs real servers and proxies produce.
import { test } from "node:test";
import assert from "node:assert/strict";

import { SSEParser } from "../tidings.js";

function parse(chunks, { end = false } = {}) {
  const out = { events: [], comments: [], retries: [] };
  const parser = new SSEParser({
    onEvent: (e) => out.events.push(e),
    onComment: (c) => out.comments.push(c),
    onRetry: (ms) => out.retries.push(ms),
  });
  for (const chunk of chunks) parser.feed(chunk);
  if (end) parser.end();
  out.parser = parser;
  return out;
}

const simple = (events) => events.map((e) => [e.type, e.data, e.id]);

test("the hub's own wire format: preamble, an event, a keepalive, a reset", () => {
  const text =
    "retry: 3000\n:ok\n\n" +
    'id: 1795333882889-0\nevent: order.created\ndata: {"id":"1795333882889-0"}\n\n' +
    ":keepalive\n\n" +
    'event: reset\ndata: {"reason":"history_unavailable"}\n\n';
  const out = parse([text]);
  assert.deepEqual(out.retries, [3000]);
  assert.deepEqual(out.comments, ["ok", "keepalive"]);
  assert.deepEqual(simple(out.events), [
    ["order.created", '{"id":"1795333882889-0"}', "1795333882889-0"],
    ["reset", '{"reason":"history_unavailable"}', "1795333882889-0"], // the last event id is sticky
  ]);
  assert.equal(out.events[0].idField, true);
  assert.equal(out.events[1].idField, false);
});

test("CR, LF and CRLF all end lines, and may be mixed", () => {
  for (const eol of ["\n", "\r", "\r\n"]) {
    const out = parse([`data: a${eol}data: b${eol}${eol}data: c${eol}${eol}`]);
    assert.deepEqual(out.events.map((e) => e.data), ["a\nb", "c"], JSON.stringify(eol));
  }
  const mixed = parse(["data: a\rdata: b\r\ndata: c\n\r\n"]);
  assert.deepEqual(mixed.events.map((e) => e.data), ["a\nb\nc"]);
});

test("a CRLF split across chunks is one line end, not two", () => {
  const out = parse(["data: a\r", "\ndata: b\r", "\n\r", "\n"]);
  assert.deepEqual(out.events.map((e) => e.data), ["a\nb"]);
});

test("a CR at the end of a chunk followed by a non-LF is still a line end", () => {
  const out = parse(["data: a\r", "\r"]);
  assert.deepEqual(out.events.map((e) => e.data), ["a"]);
});

test("every chunking of the same stream gives the same events", () => {
  const text = "\ufeffretry: 10\r\n:c\r\nid: 7\nevent: x.y\ndata: one\rdata:two\r\n\r\ndata\n\ndata:  three\n\n";
  const whole = parse([text]);
  for (let size = 1; size <= 5; size++) {
    const chunks = [];
    for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size));
    const split = parse(chunks);
    assert.deepEqual(split.events, whole.events, `chunk size ${size}`);
    assert.deepEqual(split.comments, whole.comments);
    assert.deepEqual(split.retries, whole.retries);
  }
  assert.deepEqual(simple(whole.events), [
    ["x.y", "one\ntwo", "7"],
    ["message", "", "7"], // "data" without a colon is a field with an empty value
    ["message", " three", "7"], // only one leading space is removed
  ]);
});

test("one leading BOM is dropped; a BOM later is data", () => {
  const out = parse(["\ufeff", "data: a\n\ndata: \ufeffb\n\n"]);
  assert.deepEqual(out.events.map((e) => e.data), ["a", "\ufeffb"]);
  const twice = parse(["\ufeff\ufeffdata: a\n\n"]);
  assert.deepEqual(twice.events, []); // the second BOM is part of the field name "\ufeffdata": ignored
});

test("multi-line data keeps its line breaks, without the last", () => {
  const out = parse(["data: line 1\ndata: line 2\ndata:\ndata: line 4\n\n"]);
  assert.equal(out.events[0].data, "line 1\nline 2\n\nline 4");
});

test("an empty data field dispatches an empty event; no data field dispatches nothing", () => {
  const out = parse(["data:\n\nevent: x\n\nid: 5\n\n"]);
  assert.deepEqual(simple(out.events), [["message", "", ""]]);
  assert.equal(out.parser.lastEventId, "5"); // an id without data still sets the last event id
});

test("the event type does not leak into the next event", () => {
  const out = parse(["event: a.b\ndata: 1\n\ndata: 2\n\n"]);
  assert.deepEqual(out.events.map((e) => e.type), ["a.b", "message"]);
});

test("ids: containing NUL ignored; empty resets; persists across events", () => {
  const out = parse(["id: 1\ndata: a\n\nid: x\u0000y\ndata: b\n\ndata: c\n\nid\ndata: d\n\n"]);
  assert.deepEqual(out.events.map((e) => e.id), ["1", "1", "1", ""]);
  assert.deepEqual(out.events.map((e) => e.idField), [true, false, false, true]);
});

test("retry: only ASCII digits count", () => {
  const out = parse(["retry: 1500\n\nretry: 15a\n\nretry:\n\nretry: -1\n\nretry: 2.5\n\nretry:0\n\n"]);
  assert.deepEqual(out.retries, [1500, 0]);
});

test("comments and unknown fields dispatch nothing", () => {
  const out = parse([":\n: hello\nfoo: bar\n\n"]);
  assert.deepEqual(out.comments, ["", " hello"]);
  assert.deepEqual(out.events, []);
});

test("fields are case-sensitive and a colon in the value is kept", () => {
  const out = parse(["Data: no\ndata: a:b: c\n\n"]);
  assert.deepEqual(out.events.map((e) => e.data), ["a:b: c"]);
});

test("an event cut off by the end of the stream is discarded", () => {
  const out = parse(["data: complete\n\ndata: half"], { end: true });
  assert.deepEqual(out.events.map((e) => e.data), ["complete"]);
  const unterminated = parse(["data: no blank line\n"], { end: true });
  assert.deepEqual(unterminated.events, []);
});

test("a long event arriving a byte at a time", () => {
  const data = "x".repeat(10_000);
  const text = `data: ${data}\n\n`;
  const parser = new SSEParser({ onEvent: (e) => got.push(e.data) });
  const got = [];
  for (const ch of text) parser.feed(ch);
  assert.deepEqual(got, [data]);
});
