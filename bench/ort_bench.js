#!/usr/bin/env node
// The ONNX Runtime contender of bench/run.sh (onnxruntime-node, CPU execution
// provider, from bench/node_modules: `npm install --ignore-scripts` in bench/).
//
//   node ort_bench.js serve DIR ONNXDIR     line protocol on stdin, as
//       bench/cwba_bench.c: forward ARCH SIZE BATCH REPS | probe SIZE BATCH REPS | quit
//       -> one JSON line {"ok": true, "t": [seconds per rep]}
//   node ort_bench.js mem forward ARCH SIZE BATCH DIR ONNXDIR
//   node ort_bench.js mem probe SIZE BATCH DIR ONNXDIR
//       peak resident memory of one run in this fresh process
//
// Models: ONNXDIR/forward_ARCH_SIZE_bBATCH.onnx and ONNXDIR/probe_SIZE.onnx
// (tools/export_onnx.py); inputs: the raw float32 files of DIR written by
// tools/bench_torch.py prepare, the same every contender reads. Sessions use
// CWBA_BENCH_THREADS intra-op threads (default 2), one inter-op thread,
// sequential execution and every graph optimisation.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const ort = require('onnxruntime-node');

const THREADS = parseInt(process.env.CWBA_BENCH_THREADS || '2', 10);

function readF32(file, count) {
  const buf = fs.readFileSync(file);
  if (buf.length !== count * 4) {
    throw new Error(`${file}: ${buf.length} bytes, expected ${count * 4}`);
  }
  // copy into an aligned Float32Array (the Buffer's offset may be unaligned)
  const out = new Float32Array(count);
  new Uint8Array(out.buffer).set(buf);
  return out;
}

function caseFiles(dir, onnxDir, cmd, arch, size, batch) {
  if (cmd === 'forward') {
    return {
      model: path.join(onnxDir, `forward_${arch}_${size}_b${batch}.onnx`),
      input: path.join(dir, `input_${size}_b${batch}.f32`),
      dims: [batch, 3, size, size],
    };
  }
  const s = size === 64 ? 4 : 14;
  return {
    model: path.join(onnxDir, `probe_${size}.onnx`),
    input: path.join(dir, `probe_${size}_b${batch}.f32`),
    dims: [batch, 256, s, s],
  };
}

function parse(words) {
  if (words[0] === 'forward' && words.length === 5) {
    return ['forward', words[1], +words[2], +words[3], +words[4]];
  }
  if (words[0] === 'probe' && words.length === 4) {
    return ['probe', 'resnet18', +words[1], +words[2], +words[3]];
  }
  throw new Error(`bad command: ${words.join(' ')}`);
}

async function createSession(model) {
  if (!fs.existsSync(model)) throw new Error(`${path.basename(model)} missing (export failed?)`);
  return ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: THREADS,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
}

const sessions = new Map();
const warmed = new Set();

async function runCase(dir, onnxDir, cmd, arch, size, batch, reps) {
  const f = caseFiles(dir, onnxDir, cmd, arch, size, batch);
  let sess = sessions.get(f.model);
  if (!sess) {
    sess = await createSession(f.model);
    sessions.set(f.model, sess);
  }
  const count = f.dims.reduce((a, b) => a * b, 1);
  const feeds = { [sess.inputNames[0]]: new ort.Tensor('float32', readF32(f.input, count), f.dims) };
  const key = `${cmd} ${arch} ${size} ${batch}`;
  if (!warmed.has(key)) {
    for (let i = 0; i < 2; i++) await sess.run(feeds);
    warmed.add(key);
  }
  const t = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    await sess.run(feeds);
    t.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return t;
}

async function serve(dir, onnxDir) {
  console.log(JSON.stringify({ ok: true, ready: 'ort', threads: THREADS }));
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  for await (const line of rl) {
    const words = line.trim().split(/\s+/).filter((w) => w.length > 0);
    if (words.length === 0) continue;
    if (words[0] === 'quit') break;
    try {
      const t = await runCase(dir, onnxDir, ...parse(words));
      console.log(JSON.stringify({ ok: true, t }));
    } catch (e) {
      console.log(JSON.stringify({ ok: false, error: String(e.message || e).split('\n')[0].slice(0, 300) }));
    }
  }
  rl.close();
}

function statusKb(field) {
  const m = fs.readFileSync('/proc/self/status', 'utf8').match(new RegExp(`^${field}:\\s+(\\d+)`, 'm'));
  return m ? parseInt(m[1], 10) : -1;
}

async function mem(args) {
  const probe = args[0] === 'probe';
  const [cmd, arch, size, batch, dir, onnxDir] = probe
    ? ['probe', 'resnet18', +args[1], +args[2], args[3], args[4]]
    : ['forward', args[1], +args[2], +args[3], args[4], args[5]];
  const f = caseFiles(dir, onnxDir, cmd, arch, size, batch);
  const sess = await createSession(f.model);
  const count = f.dims.reduce((a, b) => a * b, 1);
  const feeds = { [sess.inputNames[0]]: new ort.Tensor('float32', readF32(f.input, count), f.dims) };
  const loadPeak = statusKb('VmHWM');
  const before = statusKb('VmRSS');
  let reset = true;
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5');
  } catch (e) {
    reset = false;
  }
  await sess.run(feeds);
  const runPeak = statusKb('VmHWM');
  console.log(JSON.stringify({
    ok: true, load_peak_kb: loadPeak, rss_before_run_kb: before,
    run_peak_kb: reset ? runPeak : -1, peak_reset: reset,
  }));
}

async function main() {
  const a = process.argv.slice(2);
  if (a[0] === 'serve' && a.length === 3) return serve(a[1], a[2]);
  if (a[0] === 'mem' && a.length >= 5) return mem(a.slice(1));
  console.error('usage: node ort_bench.js serve DIR ONNXDIR | mem forward ARCH SIZE BATCH DIR ONNXDIR | mem probe SIZE BATCH DIR ONNXDIR');
  process.exitCode = 2;
  return undefined;
}

main().catch((e) => {
  console.error(`ort_bench: ${e.message || e}`);
  process.exitCode = 1;
});
