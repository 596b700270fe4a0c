// An HTTP server with two fd leaks, for the JavaScript frames of fdtrace
// leaks' stacks. Run it with node --perf-basic-prof
// --interpreted-frames-native-stack; it says "ready PORT" once listening
// and exits when its stdin closes.
//   GET /upload  handleUpload -> saveUpload: fs.openSync, never closed
//   GET /proxy   handleProxy -> callBackend: a request to a backend on a
//                Unix socket through a new keep-alive agent, whose socket
//                is never released (the classic agent-per-request leak)
'use strict';
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jsleaks-'));
const backendPath = path.join(dir, 'backend.sock');
let uploads = 0;

function saveUpload() {
  const fd = fs.openSync(path.join(dir, `upload-${uploads++}`), 'w');
  fs.writeSync(fd, 'data\n');
  return fd;
}

function handleUpload(req, res) {
  saveUpload();
  res.end('saved\n');
}

function callBackend(done) {
  const agent = new http.Agent({ keepAlive: true });
  http.get({ socketPath: backendPath, path: '/', agent }, (res) => {
    res.resume();
    res.on('end', done);
  });
}

function handleProxy(req, res) {
  callBackend(() => res.end('proxied\n'));
}

const backend = http.createServer((req, res) => res.end('backend\n'));
backend.keepAliveTimeout = 0; // idle connections stay: so do the leaks

const server = http.createServer((req, res) => {
  if (req.url === '/upload') handleUpload(req, res);
  else if (req.url === '/proxy') handleProxy(req, res);
  else res.writeHead(404).end();
});

backend.listen(backendPath, () => {
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`ready ${server.address().port}\n`);
  });
});
process.stdin.on('end', () => {
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(0);
});
process.stdin.resume();
