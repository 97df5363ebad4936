// Runs the API reference's connectWebSocket example (reference_example.js, copied unchanged) against
// a live server: MARKETPLACE_ORIGIN stands in for the production host the example names. The token
// and company id come from TOKEN and COMPANY_ID; the example's own output goes to stdout and stderr,
// lines starting with "[runner]" say what the transport did. Ends after TIMEOUT_MS (the tests stop it
// sooner).
'use strict';

const fs = require('fs');
const path = require('path');
const realIo = require('socket.io-client');

const origin = process.env.MARKETPLACE_ORIGIN;
const sockets = [];

function io(url, options) {
  const socket = realIo(url.replace('https://ai-admin.app', origin), options);
  socket.io.on('open', () => {
    const engine = socket.io.engine;
    console.log(`[runner] engine open over ${engine.transport.name}`);
    engine.on('upgrade', (transport) => console.log(`[runner] upgraded to ${transport.name}`));
  });
  socket.on('connect_error', (err) => {
    console.log(`[runner] connect_error ${JSON.stringify({ message: err.message, data: err.data })}`);
  });
  socket.on('disconnect', (reason) => console.log(`[runner] disconnect ${reason}`));
  sockets.push(socket);
  return socket;
}

const source = fs.readFileSync(path.join(__dirname, 'reference_example.js'), 'utf8');
const load = new Function('require', `${source}\nreturn connectWebSocket;`);
const connectWebSocket = load((name) => (name === 'socket.io-client' ? io : require(name)));

connectWebSocket(process.env.TOKEN, Number(process.env.COMPANY_ID));

setTimeout(() => {
  sockets.forEach((socket) => socket.close());
  process.exit(0);
}, Number(process.env.TIMEOUT_MS || 60000));
