// An HTTP server that runs out of fds: it opens /dev/null until EMFILE,
// then says "ready PORT". Connections that come while it is at its limit
// meet libuv's EMFILE handling: it closes its spare fd, accepts and closes
// every queued connection, and opens the spare again. A line on stdin
// closes what it opened ("freed"), so that it can serve again.
'use strict';
const fs = require('fs');
const http = require('http');

const held = [];
process.stdin.on('data', () => {
  while (held.length > 0) fs.closeSync(held.pop());
  process.stdout.write('freed\n');
});

const server = http.createServer((req, res) => res.end('hello\n'));
server.listen(0, '127.0.0.1', () => {
  for (;;) {
    try {
      held.push(fs.openSync('/dev/null', 'r'));
    } catch (e) {
      if (e.code !== 'EMFILE') throw e;
      break;
    }
  }
  process.stdout.write(`ready ${server.address().port} ${held.length}\n`);
});
