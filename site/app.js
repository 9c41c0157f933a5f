// gochat-py browser client: log in / register, several rooms and private chats on one websocket.
// Plain ES2020, no dependencies, no build step. All user-provided text goes through textContent.
//
// Wire protocol: protocol v2 (docs/protocol.md) on one websocket, HTTP for the rest.
//   HTTP  POST <api>/user/login|register|checkAuth|logout, /push/history (a room's kept messages),
//         /push/privateHistory (a private conversation's)
//   WS    <ws>: first message the hello {"v":2,"authToken","since"?}; the server answers with a welcome.
//         Then commands {"cid","cmd",…} (subscribe, unsubscribe, publish, send, typing, ping), each
//         answered once by {"cid","result"} or {"cid","error"}, and events {"type",…} (message,
//         join, leave, typing, gap, session_ended) in between.
'use strict';

const TOKEN_KEY = 'authToken';          // the original UI's localStorage key
const DEFAULT_ROOM = 1;
const MAX_ROOM = 2147483647;
const MAX_CID = 2147483647;
const PROTOCOL_VERSION = 2;
const CODE_OK = 0;
const CODE_SESSION_ERROR = 40000;
const CLOSE_POLICY = 1008;              // bad token, auth timeout, too slow, logout
const BACKOFF_START_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const STABLE_MS = 10000;                // a socket open this long resets the backoff
const WELCOME_TIMEOUT_MS = 10000;       // a server that does not answer the hello (not v2): try again
const PING_EVERY_MS = 25000;            // keeps idle sockets open through proxies…
const PING_TIMEOUT_MS = 10000;          // …and finds dead ones the browser has not noticed
const MAX_KEPT = 500;                   // messages kept per conversation (older ones page in again)
const HISTORY_PAGE = 50;                // messages per history request
const OLDER_TRIGGER_PX = 40;            // scrolled this close to the top: fetch the page before
const LAST_ID_KEY = 'gochat.lastId.';   // + user id: the newest private message id this browser saw
const ROOMS_KEY = 'gochat.rooms.';      // + user id: the rooms open in this browser
const SEND_TIMEOUT_MS = 30000;          // a message without a result this long after Send has failed
const SEND_RETRY_MS = { 5: 1000, 7: 2000 }; // rate_limited, unavailable: try again after this
const ECHO_HOLD_MS = 2000;              // our own message's event may come before the result: wait
const TYPING_SEND_MS = 3000;            // send `typing` at most this often per conversation
const TYPING_SHOW_MS = 5000;            // show "x is typing…" this long after their last `typing`
const ERROR_SESSION_ENDED = 2;
const ERROR_TOO_MANY_ROOMS = 4;

const state = {
  apiUrl: '',
  wsUrl: '',
  wsUrls: [],
  token: null,
  me: null,                 // {userId: string, userName} once checkAuth succeeds
  rooms: new Map(),         // roomId (number) -> room (see newRoom), in the order they were opened
  privates: new Map(),      // userId (string) -> {userId, name, log, unread, last, typing}
  view: { kind: 'room', roomId: DEFAULT_ROOM }, // or {kind: 'private', userId}
  membersRoomId: DEFAULT_ROOM, // the room whose members the sidebar lists (the last one viewed)
  privateSince: '',         // newest private message id received: the hello's `since`
  readMark: '',             // privateSince as this browser left it last time: kept privates up to it were seen
  localSeq: 0,              // orders messages without an id (ours, not yet acknowledged)
  ws: null,                 // the current socket; events from older sockets are ignored
  welcomed: false,          // the current socket got its welcome: commands may go
  limits: null,             // the welcome's limits
  nextCid: 1,
  replies: new Map(),       // cid -> callback(reply or null when the socket went away first)
  outbox: new Map(),        // mid -> a message we sent that has no result yet (see sendMessage)
  midPrefix: '',
  midSeq: 0,
  heldEchoes: new Map(),    // message id -> {log, message, timer}: our own, waiting for its result
  typingSentAt: new Map(),  // conversation key -> when we last sent `typing` there
  typingTimer: null,
  sendTimeoutMs: SEND_TIMEOUT_MS,
  reconnectTimer: null,
  countdownTimer: null,
  stableTimer: null,
  welcomeTimer: null,
  pingTimer: null,
  reconnectAttempt: 0,
  reconnectAt: 0,
  authBusy: false,
};

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---------------------------------------------------------------------------
// Configuration: /config.json from the site server, else derived from our own address
// ---------------------------------------------------------------------------

function defaultConfig() {
  const host = location.hostname || '127.0.0.1';
  const secure = location.protocol === 'https:';
  return {
    apiUrl: `${secure ? 'https' : 'http'}://${host}:7070`,
    wsUrl: `${secure ? 'wss' : 'ws'}://${host}:7000/ws`,
  };
}

function nonEmptyString(value) {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : null;
}

async function loadConfig() {
  const defaults = defaultConfig();
  let cfg = {};
  try {
    const res = await fetch('config.json', { cache: 'no-store' });
    if (res.ok) cfg = (await res.json()) || {};
  } catch (_) {
    // No or malformed config.json: fall back to the derived defaults.
  }
  state.apiUrl = (nonEmptyString(cfg.apiUrl) || defaults.apiUrl).replace(/\/+$/, '');
  state.wsUrl = nonEmptyString(cfg.wsUrl) || defaults.wsUrl;
  state.wsUrls = wsUrlsOf(cfg, state.wsUrl);
}

function wsUrlsOf(cfg, fallback) {
  const urls = Array.isArray(cfg.wsUrls) ? cfg.wsUrls.map(nonEmptyString).filter(Boolean) : [];
  return urls.length ? urls : [fallback];
}

// Before reconnecting: ask which websocket nodes are live now, and leave the one that failed
// for another (its clients resume there by since). One node only: try it again.
async function moveToAnotherNode() {
  try {
    const res = await fetch('config.json', { cache: 'no-store' });
    if (res.ok) state.wsUrls = wsUrlsOf((await res.json()) || {}, state.wsUrl);
  } catch (_) {
    // the site is away too: keep the list we have
  }
  const others = state.wsUrls.filter((url) => url !== state.wsUrl);
  if (others.length) state.wsUrl = others[Math.floor(Math.random() * others.length)];
}

// ---------------------------------------------------------------------------
// HTTP API
// ---------------------------------------------------------------------------

// POST a JSON body and always resolve to an envelope {code, data, message},
// so callers have one failure shape to deal with (network errors included).
async function api(path, body) {
  try {
    const res = await fetch(state.apiUrl + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const env = await res.json();
    if (!env || typeof env !== 'object' || typeof env.code !== 'number') {
      return { code: 1, data: null, message: 'Unexpected answer from the server' };
    }
    return { code: env.code, data: env.data, message: typeof env.message === 'string' ? env.message : '' };
  } catch (_) {
    return { code: 1, data: null, message: 'Cannot reach the server', network: true };
  }
}

function failureText(env, fallback) {
  return env.message || fallback;
}

// A 40000 from any endpoint means the token is dead: end the session. `token` is the
// one the request used, so a late answer for an old session cannot end a newer one.
function handleSessionError(env, token) {
  if (env.code !== CODE_SESSION_ERROR) return false;
  if (token === state.token) endSession('Your session has ended, please log in again');
  return true;
}

// ---------------------------------------------------------------------------
// Screens
// ---------------------------------------------------------------------------

function showLoading() {
  $('loading').hidden = false;
  $('auth').hidden = true;
  $('chat').hidden = true;
  $('session').hidden = true;
}

function showLogin(errorText = '') {
  $('loading').hidden = true;
  $('chat').hidden = true;
  $('session').hidden = true;
  $('auth').hidden = false;
  $('auth-error').textContent = errorText;
  $('password').value = '';
  ($('username').value ? $('password') : $('username')).focus();
}

function showChat() {
  $('loading').hidden = true;
  $('auth').hidden = true;
  $('auth-error').textContent = '';
  $('me').textContent = state.me.userName;
  $('me').title = `Logged in as ${state.me.userName}`;
  $('session').hidden = false;
  $('chat').hidden = false;
  renderAll();
  $('msg-input').focus();
}

function announce(text) {
  $('announcer').textContent = text;
}

// ---------------------------------------------------------------------------
// Connection state
// ---------------------------------------------------------------------------

const CONN_LABELS = {
  connecting: 'connecting…',
  connected: 'connected',
  reconnecting: 'reconnecting',
  disconnected: 'disconnected',
};

function setConnState(name, detail = '') {
  const label = $('conn-state');
  label.textContent = detail || CONN_LABELS[name] || name;
  label.dataset.state = name;
  $('conn').dataset.state = name;
  $('chat').dataset.conn = name;
  $('retry-btn').hidden = name !== 'reconnecting';
}

function showCountdown() {
  const seconds = Math.max(1, Math.ceil((state.reconnectAt - Date.now()) / 1000));
  setConnState('reconnecting', `reconnecting in ${seconds} s`);
}

// ---------------------------------------------------------------------------
// Session lifecycle
// ---------------------------------------------------------------------------

// Verify a token and enter the chat, or fall back to the login form.
async function startSession(token) {
  disconnect();
  state.token = token;
  showLoading();
  const env = await api('/user/checkAuth', { authToken: token });
  if (token !== state.token) return; // superseded meanwhile
  if (env.code !== CODE_OK || !env.data || typeof env.data !== 'object') {
    // Only an explicit rejection drops the token; a network failure keeps it for a reload.
    if (!env.network) forgetToken();
    state.token = null;
    showLogin(env.code === CODE_SESSION_ERROR ? 'Your session has ended, please log in again'
      : failureText(env, 'Authentication failed'));
    return;
  }
  state.me = { userId: String(env.data.userId), userName: String(env.data.userName ?? '') };
  resetChat();
  state.privateSince = storedLastId();
  state.readMark = state.privateSince;
  const shown = roomFromHash() ?? DEFAULT_ROOM;
  for (const roomId of [...storedRooms(), shown]) openRoomTab(roomId);
  state.view = { kind: 'room', roomId: shown };
  state.membersRoomId = shown;
  showChat();
  connect();
}

function forgetToken() {
  if (localStorage.getItem(TOKEN_KEY) === state.token) localStorage.removeItem(TOKEN_KEY);
}

function resetChat() {
  for (const entry of state.outbox.values()) clearTimeout(entry.timer);
  state.outbox.clear();
  dropHeldEchoes();
  state.rooms.clear();
  state.privates.clear();
  state.privateSince = '';
  state.readMark = '';
  state.typingSentAt.clear();
  state.view = { kind: 'room', roomId: DEFAULT_ROOM };
  state.membersRoomId = DEFAULT_ROOM;
  state.midPrefix = Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
  state.midSeq = 0;
  $('online-count').textContent = '0';
  $('msg-input').value = '';
  $('send-error').textContent = '';
  $('room-error').textContent = '';
}

// Local teardown shared by Log out and by a dead token.
function endSession(errorText = '') {
  disconnect();
  forgetToken();
  state.token = null;
  state.me = null;
  resetChat();
  updateTitle();
  showLogin(errorText);
}

async function logout() {
  const token = state.token;
  // Tear down locally first so the page reacts at once; the server call is best effort.
  endSession();
  if (token) await api('/user/logout', { authToken: token });
}

// ---------------------------------------------------------------------------
// Log in / register
// ---------------------------------------------------------------------------

async function authenticate(path) {
  if (state.authBusy) return;
  const userName = $('username').value.trim();
  const passWord = $('password').value;
  if (!userName || !passWord) {
    $('auth-error').textContent = 'Please enter a user name and a password';
    return;
  }
  setAuthBusy(true);
  $('auth-error').textContent = '';
  const env = await api(path, { userName, passWord });
  setAuthBusy(false);
  if (env.code !== CODE_OK || typeof env.data !== 'string' || !env.data) {
    $('auth-error').textContent = failureText(env, 'Request failed');
    return;
  }
  localStorage.setItem(TOKEN_KEY, env.data);
  await startSession(env.data);
}

function setAuthBusy(busy) {
  state.authBusy = busy;
  $('login-btn').disabled = busy;
  $('register-btn').disabled = busy;
  $('login-form').setAttribute('aria-busy', String(busy));
}

// ---------------------------------------------------------------------------
// The websocket: one for every room and conversation
// ---------------------------------------------------------------------------

function connect() {
  clearReconnect();
  if (!state.token || state.ws) return;
  setConnState('connecting');
  let ws;
  try {
    ws = new WebSocket(state.wsUrl);
  } catch (_) {
    // A malformed URL throws synchronously; treat it like a failed connection.
    scheduleReconnect();
    return;
  }
  const token = state.token;
  state.ws = ws;
  state.welcomed = false;
  state.nextCid = 1;
  ws.onopen = () => {
    if (ws !== state.ws) return;
    const hello = { v: PROTOCOL_VERSION, authToken: token };
    if (state.privateSince) hello.since = state.privateSince;
    ws.send(JSON.stringify(hello));
    state.welcomeTimer = setTimeout(() => dropSocket(ws), WELCOME_TIMEOUT_MS);
  };
  ws.onmessage = (ev) => { if (ws === state.ws) handleFrame(ev.data); };
  ws.onclose = (ev) => onSocketClose(ws, ev);
  ws.onerror = () => {}; // always followed by close, which drives the reconnect
}

function onWelcome(frame) {
  clearTimeout(state.welcomeTimer);
  state.welcomeTimer = null;
  state.welcomed = true;
  state.limits = frame.limits && typeof frame.limits === 'object' ? frame.limits : null;
  const maxLength = Number(state.limits?.message_length);
  if (Number.isInteger(maxLength) && maxLength > 0) $('msg-input').maxLength = maxLength;
  setConnState('connected');
  state.stableTimer = setTimeout(() => { state.reconnectAttempt = 0; }, STABLE_MS);
  schedulePing();
  // Without a `since` the hello brings only what was kept while we had no socket: the open
  // conversations' history fills in anything else.
  if (!state.privateSince) {
    for (const conv of state.privates.values()) {
      if (conv.log.history === 'loaded') loadNewest(conv.log);
    }
  }
  // Commands are answered in order: rooms first, then what is waiting to be sent into them.
  for (const room of state.rooms.values()) subscribe(room);
  for (const entry of state.outbox.values()) {
    if (!entry.failed) transmit(entry);
  }
}

// Sends a command on the current socket; `onReply` gets the reply, or null if the socket went
// away before one came. False when there is no socket to send on.
function command(cmd, fields, onReply = () => {}) {
  const ws = state.ws;
  if (!ws || !state.welcomed || ws.readyState !== WebSocket.OPEN) return false;
  const cid = state.nextCid;
  state.nextCid = cid >= MAX_CID ? 1 : cid + 1;
  state.replies.set(cid, onReply);
  try {
    ws.send(JSON.stringify({ cid, cmd, ...fields }));
  } catch (_) {
    state.replies.delete(cid);
    return false;
  }
  return true;
}

function schedulePing() {
  clearTimeout(state.pingTimer);
  const ws = state.ws;
  state.pingTimer = setTimeout(() => {
    if (ws !== state.ws) return;
    const timeout = setTimeout(() => dropSocket(ws), PING_TIMEOUT_MS);
    const sent = command('ping', {}, (reply) => {
      clearTimeout(timeout);
      if (reply && ws === state.ws) schedulePing();
    });
    if (!sent) clearTimeout(timeout);
  }, PING_EVERY_MS);
}

function clearSocketTimers() {
  clearTimeout(state.stableTimer);
  clearTimeout(state.welcomeTimer);
  clearTimeout(state.pingTimer);
  state.stableTimer = null;
  state.welcomeTimer = null;
  state.pingTimer = null;
}

// The socket is gone (or given up on): what was waiting for a reply learns it, the rooms wait for
// the next welcome to subscribe again.
function socketGone() {
  state.ws = null;
  state.welcomed = false;
  clearSocketTimers();
  const waiting = [...state.replies.values()];
  state.replies.clear();
  for (const onReply of waiting) onReply(null);
  for (const room of state.rooms.values()) {
    room.subscribed = false;
    room.subscribing = false;
  }
  for (const conv of allConversations()) conv.typing.clear();
  renderTyping();
}

// A socket that stopped answering (no welcome, no pong): do not wait for the browser to notice.
function dropSocket(ws) {
  if (ws !== state.ws) return;
  try { ws.close(4000, 'no answer'); } catch (_) { /* already closed */ }
  onSocketClose(ws, { code: 1006 });
}

async function onSocketClose(ws, ev) {
  if (ws !== state.ws) return; // replaced, or closed on purpose
  socketGone();
  setConnState('disconnected');
  if (ev.code === CLOSE_POLICY && state.token) {
    // Refused hello or session ended: maybe the token died (logged in elsewhere, logged out, expired).
    const token = state.token;
    const env = await api('/user/checkAuth', { authToken: token });
    if (handleSessionError(env, token) || token !== state.token) return;
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  if (!state.token || state.reconnectTimer || state.ws) return;
  const base = Math.min(BACKOFF_START_MS * 2 ** state.reconnectAttempt, BACKOFF_MAX_MS);
  const delay = Math.round(base * (0.8 + Math.random() * 0.4)); // jitter: no thundering herd
  state.reconnectAttempt += 1;
  state.reconnectAt = Date.now() + delay;
  state.reconnectTimer = setTimeout(() => moveToAnotherNode().then(connect), delay);
  showCountdown();
  state.countdownTimer = setInterval(showCountdown, 1000);
}

function clearReconnect() {
  clearTimeout(state.reconnectTimer);
  clearInterval(state.countdownTimer);
  state.reconnectTimer = null;
  state.countdownTimer = null;
}

// Close on purpose: detach first so onclose does not schedule a reconnect.
function disconnect() {
  clearReconnect();
  state.reconnectAttempt = 0;
  const ws = state.ws;
  socketGone();
  if (ws) {
    try { ws.close(1000); } catch (_) { /* already closed */ }
  }
  setConnState('disconnected');
}

function reconnectNow() {
  if (!state.token || state.ws) return;
  state.reconnectAttempt = 0;
  connect();
}

// ---------------------------------------------------------------------------
// Rooms: tabs, each subscribed on the socket
// ---------------------------------------------------------------------------

function parseRoom(text) {
  const value = String(text ?? '').trim();
  if (!/^\d+$/.test(value)) return null;
  const n = Number(value);
  return n >= 1 && n <= MAX_ROOM ? n : null;
}

function roomFromHash() {
  const match = /^#room=(\d+)$/.exec(location.hash);
  return match ? parseRoom(match[1]) : null;
}

function newRoom(roomId) {
  return {
    roomId,
    log: newLog('room', roomId),
    unread: 0,
    members: new Map(),     // userId (string) -> userName: subscribe's snapshot, then join/leave
    count: 0,
    lastId: '',             // newest id of this room received: the next subscribe's `since`
    subscribed: false,
    subscribing: false,     // a subscribe is on its way: a history page now says nothing about `since`
    typing: new Map(),      // userId -> {name, until}
  };
}

function storedRooms() {
  try {
    const rooms = JSON.parse(localStorage.getItem(ROOMS_KEY + state.me.userId) || '[]');
    return Array.isArray(rooms) ? rooms.map(parseRoom).filter((roomId) => roomId !== null) : [];
  } catch (_) {
    return [];
  }
}

function storeRooms() {
  if (!state.me) return;
  try {
    localStorage.setItem(ROOMS_KEY + state.me.userId, JSON.stringify([...state.rooms.keys()]));
  } catch (_) {
    // Storage full or disabled: the next visit opens the page's room only.
  }
}

// Adds a room to the open ones (subscribing when the socket is up); the existing one if open.
function openRoomTab(roomId) {
  let room = state.rooms.get(roomId);
  if (!room) {
    room = newRoom(roomId);
    state.rooms.set(roomId, room);
    storeRooms();
    // Connected: subscribe, then the history. Not yet: the history now, and the subscribe resumes
    // after its newest message.
    if (state.welcomed) subscribe(room);
    else loadNewest(room.log);
  }
  return room;
}

function subscribe(room) {
  const fields = { room: room.roomId };
  if (room.lastId) fields.since = room.lastId; // what we missed comes first, then the live ones
  const ws = state.ws;
  room.subscribing = command('subscribe', fields, (reply) => {
    room.subscribing = false;
    if (!reply || state.rooms.get(room.roomId) !== room) return;
    if (reply.error) {
      $('room-error').textContent = `Room ${room.roomId}: ${errorText(reply.error)}`;
      if (reply.error.code === ERROR_TOO_MANY_ROOMS || reply.error.code === 1) {
        closeRoomTab(room.roomId, false);
        $('room-error').textContent = `Room ${room.roomId}: ${errorText(reply.error)}`;
      } else {
        setTimeout(() => { if (ws === state.ws && state.rooms.get(room.roomId) === room) subscribe(room); }, 2000);
      }
      return;
    }
    room.subscribed = true;
    applyPresence(room, reply.result);
    // Without a `since` nothing was replayed: the history has what came before (again after a
    // reconnect: what came while we were away).
    if (!fields.since || room.log.history !== 'loaded') loadNewest(room.log);
  });
}

function showRoom(roomId) {
  $('room-error').textContent = '';
  const room = openRoomTab(roomId);
  openView({ kind: 'room', roomId: room.roomId });
  if (!state.ws && !state.reconnectTimer && state.token) connect();
}

function closeRoomTab(roomId, unsubscribe = true) {
  const room = state.rooms.get(roomId);
  if (!room) return;
  state.rooms.delete(roomId);
  storeRooms();
  for (const [mid, entry] of state.outbox) {
    if (entry.log === room.log) {
      clearTimeout(entry.timer);
      state.outbox.delete(mid);
    }
  }
  if (unsubscribe && room.subscribed) command('unsubscribe', { room: roomId });
  if (state.rooms.size === 0) openRoomTab(DEFAULT_ROOM); // one room stays open
  const next = state.rooms.keys().next().value;
  if (state.membersRoomId === roomId) state.membersRoomId = next;
  if (state.view.kind === 'room' && state.view.roomId === roomId) openView({ kind: 'room', roomId: next });
  else renderAll();
  announce(`Left room ${roomId}`);
}

function syncHash() {
  const roomId = state.membersRoomId;
  const hash = roomId === DEFAULT_ROOM ? '' : `#room=${roomId}`;
  if (location.hash !== hash) history.replaceState(null, '', location.pathname + location.search + hash);
}

// ---------------------------------------------------------------------------
// Presence
// ---------------------------------------------------------------------------

function applyPresence(room, result) {
  const members = result && typeof result.members === 'object' && result.members ? result.members : {};
  room.members = new Map(Object.entries(members).map(([id, name]) => [String(id), String(name ?? '')]));
  const count = Number(result?.count);
  room.count = Number.isInteger(count) && count >= 0 ? count : room.members.size;
  for (const [id, name] of room.members) {
    const conv = state.privates.get(id);
    if (conv && name) conv.name = name;
  }
  renderPresence();
}

function onJoinOrLeave(frame, joined) {
  const room = state.rooms.get(Number(frame.room));
  const user = frame.user;
  if (!room || !user || typeof user !== 'object' || user.id === undefined) return;
  const id = String(user.id);
  if (joined) {
    if (!room.members.has(id)) room.count += 1;
    room.members.set(id, String(user.name ?? ''));
  } else {
    if (room.members.delete(id)) room.count = Math.max(0, room.count - 1);
    room.typing.delete(id);
  }
  renderPresence();
  if (isShownRoom(room)) renderTyping();
}

function renderPresence() {
  renderMembers();
  renderConversations();
}

// ---------------------------------------------------------------------------
// Incoming frames
// ---------------------------------------------------------------------------

function parseFrame(data) {
  if (typeof data !== 'string' || data.trim() === '') return null;
  try {
    const frame = JSON.parse(data);
    return frame && typeof frame === 'object' && !Array.isArray(frame) ? frame : null;
  } catch (_) {
    return null;
  }
}

function handleFrame(data) {
  const frame = parseFrame(data);
  if (!frame) return;
  try {
    if (typeof frame.cid === 'number' && ('result' in frame || 'error' in frame)) {
      onReply(frame);
      return;
    }
    switch (frame.type) {
      case 'welcome': if (!state.welcomed) onWelcome(frame); break;
      case 'message': receiveMessage(frame); break;
      case 'join': onJoinOrLeave(frame, true); break;
      case 'leave': onJoinOrLeave(frame, false); break;
      case 'typing': onTyping(frame); break;
      case 'gap': onGap(frame); break;
      default: break; // session_ended (the close follows) and unknown types are ignored by design
    }
  } catch (err) {
    console.warn('bad frame', err); // a malformed frame must never break the socket handler
  }
}

function onReply(frame) {
  const callback = state.replies.get(frame.cid);
  if (!callback) return; // cid 0 (an unreadable command of ours) or a stale one
  state.replies.delete(frame.cid);
  const error = frame.error && typeof frame.error === 'object' ? frame.error : null;
  if (error && error.code === ERROR_SESSION_ENDED) announce('Your session has ended');
  callback(error ? { error } : { result: frame.result && typeof frame.result === 'object' ? frame.result : {} });
}

function errorText(error) {
  return typeof error.message === 'string' && error.message ? error.message : `error ${error.code}`;
}

function pad(n) {
  return String(n).padStart(2, '0');
}

function localStamp(d = new Date()) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// "YYYY-MM-DD HH:MM:SS" -> what we show and keep. Without a stamp, a message arriving now shows the
// local time; one from history shows none rather than a wrong one.
function timeFields(stamp, nowIfMissing = true) {
  const text = String(stamp ?? '') || (nowIfMissing ? localStamp() : '');
  const match = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d)(:\d\d)?$/.exec(text);
  return match
    ? { time: match[2], datetime: `${match[1]}T${match[2]}${match[3] || ''}`, full: text }
    : { time: text, datetime: '', full: text };
}

// ---------------------------------------------------------------------------
// Message ids: opaque strings "<ms>-<seq>", read as two integers only to order messages
// ---------------------------------------------------------------------------

function idParts(id) {
  const match = /^(\d+)-(\d+)$/.exec(typeof id === 'string' ? id : '');
  return match ? [match[1].replace(/^0+(?=\d)/, ''), match[2].replace(/^0+(?=\d)/, '')] : null;
}

// Decimal strings compared as integers, without Number's 2^53 limit.
function compareDigits(a, b) {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

// Negative, zero or positive; a missing or malformed id sorts before every real one.
function compareIds(a, b) {
  const x = idParts(a);
  const y = idParts(b);
  if (!x || !y) return (x ? 1 : 0) - (y ? 1 : 0);
  return compareDigits(x[0], y[0]) || compareDigits(x[1], y[1]);
}

function storedLastId() {
  try {
    return localStorage.getItem(LAST_ID_KEY + state.me.userId) || '';
  } catch (_) {
    return '';
  }
}

function storeLastId(id) {
  try {
    localStorage.setItem(LAST_ID_KEY + state.me.userId, id);
  } catch (_) {
    // Storage full or disabled: the next visit just counts a few more kept privates as unread.
  }
}

// Remember the newest private id received, here and for the next visit (privates up to it were seen).
function notePrivateId(id) {
  if (!id || !state.me || compareIds(id, state.privateSince) <= 0) return;
  state.privateSince = id;
  storeLastId(id);
}

function noteRoomId(room, id) {
  if (id && compareIds(id, room.lastId) > 0) room.lastId = id;
}

// ---------------------------------------------------------------------------
// Message logs: one per conversation, kept in id order, each id once
// ---------------------------------------------------------------------------

// kind 'room' (key: roomId) or 'private' (key: the other user's id).
function newLog(kind, key) {
  return {
    kind,
    key,
    messages: [],
    ids: new Set(),         // de-duplication: history, backlog, live events and results overlap
    history: 'none',        // latest page: 'none' | 'loading' | 'loaded' | 'failed'
    more: false,            // the server keeps messages older than our oldest
    olderBusy: false,
    olderFailed: false,     // stops paging on its own until the user asks again
  };
}

// A message with an id sorts by it. One without (ours, until its result) sorts right after the
// newest id the log had when it was sent (its anchor), in the order sent.
function compareMessages(a, b) {
  return compareIds(a.anchor, b.anchor) || a.seq - b.seq;
}

// Inserts in order and returns the index, or -1 for an id already there. Walks from the end:
// live messages are nearly always the newest.
function insertMessage(log, message) {
  if (message.id) {
    if (log.ids.has(message.id)) return -1;
    log.ids.add(message.id);
    message.anchor = message.id;
    message.seq = 0;
  } else {
    message.anchor = newestId(log);
    state.localSeq += 1;
    message.seq = state.localSeq;
  }
  let i = log.messages.length;
  while (i > 0 && compareMessages(log.messages[i - 1], message) > 0) i -= 1;
  log.messages.splice(i, 0, message);
  return i;
}

function removeMessage(log, message) {
  const index = log.messages.indexOf(message);
  if (index >= 0) log.messages.splice(index, 1);
}

function newestId(log) {
  for (let i = log.messages.length - 1; i >= 0; i -= 1) {
    if (log.messages[i].id) return log.messages[i].id;
  }
  return '';
}

function oldestId(log) {
  const first = log.messages.find((message) => message.id);
  return first ? first.id : '';
}

// Drop the oldest messages over MAX_KEPT (they can be paged in again), unless the user is reading
// up there. Messages still being sent stay. Returns how many went.
function trimLog(log) {
  const excess = log.messages.length - MAX_KEPT;
  if (excess <= 0 || (isShown(log) && !isNearBottom($('messages')))) return 0;
  let dropped = 0;
  log.messages = log.messages.filter((message, index) => {
    if (index >= excess || !message.id) return true;
    log.ids.delete(message.id);
    log.more = true;
    dropped += 1;
    return false;
  });
  return dropped;
}

// A message event (v2) as the page keeps it.
function eventMessage(frame) {
  const from = frame.from && typeof frame.from === 'object' ? frame.from : {};
  const fromUserId = String(from.id ?? '');
  const time = Number(frame.time);
  return {
    id: typeof frame.id === 'string' ? frame.id : '',
    fromUserId,
    fromName: String(from.name ?? '') || `user ${from.id ?? '?'}`,
    text: String(frame.msg ?? ''),
    own: state.me !== null && fromUserId === state.me.userId,
    ...timeFields(Number.isFinite(time) && time > 0 ? localStamp(new Date(time)) : ''),
  };
}

// A message of an HTTP history page (v1 shape) as the page keeps it.
function historyMessage(log, frame) {
  const fromUserId = String(frame.fromUserId ?? '');
  const own = state.me !== null && fromUserId === state.me.userId;
  let fromName = String(frame.fromUserName ?? '');
  if (log.kind === 'private') fromName = own ? state.me.userName : fromName || privateConversation(log.key).name;
  return {
    id: typeof frame.id === 'string' ? frame.id : '',
    fromUserId,
    fromName: fromName || `user ${frame.fromUserId ?? '?'}`,
    text: String(frame.msg ?? ''),
    own,
    ...timeFields(frame.createTime, false),
  };
}

function receiveMessage(frame) {
  if (!state.me || typeof frame.id !== 'string' || !frame.id) return;
  if (frame.room !== undefined) {
    const room = state.rooms.get(Number(frame.room));
    if (!room) return; // a late event of a room we left
    noteRoomId(room, frame.id);
    const message = eventMessage(frame);
    room.typing.delete(message.fromUserId);
    if (isShownRoom(room)) renderTyping();
    if (!holdEcho(room.log, message)) addRoomMessage(room, message);
    return;
  }
  if (frame.user === undefined) return;
  const otherId = String(frame.user);
  if (otherId === state.me.userId) return; // a conversation with oneself is not one
  const message = eventMessage(frame);
  // the other party's name: the sender's, or for our own (sent from another tab) what we know
  const conv = privateConversation(otherId, message.own ? '' : message.fromName);
  notePrivateId(frame.id);
  conv.typing.delete(message.fromUserId);
  if (isViewing(otherId)) renderTyping();
  if (!holdEcho(conv.log, message)) addPrivate(conv, message);
}

function addRoomMessage(room, message) {
  const index = insertMessage(room.log, message);
  if (index < 0) return; // seen already (history, the result of our own send, an earlier backlog)
  if (isShownRoom(room)) {
    showInserted(room.log, index);
  } else {
    trimLog(room.log);
    if (!message.own) {
      room.unread += 1;
      renderConversations();
      updateTitle();
    }
  }
}

function privateConversation(userId, name) {
  let conv = state.privates.get(userId);
  if (!conv) {
    conv = { userId, name: name || memberName(userId) || `user ${userId}`, log: newLog('private', userId), unread: 0, last: 0, typing: new Map() };
    state.privates.set(userId, conv);
  } else if (name) {
    conv.name = name;
  }
  return conv;
}

function addPrivate(conv, message) {
  const index = insertMessage(conv.log, message);
  if (index < 0) return;
  conv.last = Date.now();
  showInserted(conv.log, index);
  // Sent while we were away (offline delivery, a resumed backlog) counts as unread too; only what
  // this browser already saw on an earlier visit (a backlog after a too-old `since`) does not.
  const seenBefore = compareIds(message.id, state.readMark) <= 0;
  if (!message.own && !isViewing(conv.userId) && !seenBefore) {
    conv.unread += 1;
    announce(`New private message from ${conv.name}`);
  }
  renderConversations();
  renderMembers();
  updateTitle();
}

function isViewing(userId) {
  return state.view.kind === 'private' && state.view.userId === userId;
}

function isShownRoom(room) {
  return state.view.kind === 'room' && state.view.roomId === room.roomId;
}

function memberName(userId) {
  for (const room of state.rooms.values()) {
    const name = room.members.get(userId);
    if (name) return name;
  }
  return '';
}

function isOnline(userId) {
  for (const room of state.rooms.values()) {
    if (room.members.has(userId)) return true;
  }
  return false;
}

function allConversations() {
  return [...state.rooms.values(), ...state.privates.values()];
}

// A gap: a `since` could not be honoured. What the server kept follows on the socket; the latest
// page of history is merged in as well.
function onGap(frame) {
  if (frame.room !== undefined) {
    const room = state.rooms.get(Number(frame.room));
    if (!room) return;
    if (frame.reason === 'unknown') room.lastId = ''; // not one of the server's: never ask for it again
    loadNewest(room.log);
    return;
  }
  // The hello's: an unknown id (say a stored one from another deployment) is forgotten, or every
  // later hello would ask for it again, since notePrivateId only ever moves it forward.
  if (frame.reason === 'unknown') {
    if (state.readMark === state.privateSince) state.readMark = ''; // the stored one: no mark at all
    state.privateSince = '';
    if (state.me) storeLastId('');
  }
  for (const conv of state.privates.values()) {
    if (conv.log.history === 'loaded' || isViewing(conv.userId)) loadNewest(conv.log);
  }
}

// ---------------------------------------------------------------------------
// History over HTTP: the latest page of a conversation, older pages on scrolling up
// ---------------------------------------------------------------------------

function historyRequest(log, before) {
  const body = log.kind === 'room' ? { roomId: log.key } : { userId: Number(log.key) };
  if (before) body.before = before;
  return { path: log.kind === 'room' ? '/push/history' : '/push/privateHistory', body };
}

// Whether the log still belongs to what the page shows (not a room we left or a past session).
function isCurrentLog(log) {
  const owner = log.kind === 'room' ? state.rooms.get(log.key) : state.privates.get(log.key);
  return owner !== undefined && owner.log === log;
}

// One page of a log's history: {messages: [frame…] oldest first, more}, {failed: true}, or null
// when the answer no longer matters (logged out, or the log was closed meanwhile).
async function fetchHistory(log, before = '') {
  const token = state.token;
  if (!token) return null;
  const { path, body } = historyRequest(log, before);
  const env = await api(path, { authToken: token, ...body, limit: HISTORY_PAGE });
  if (handleSessionError(env, token) || token !== state.token || !isCurrentLog(log)) return null;
  const data = env.data && typeof env.data === 'object' ? env.data : null;
  if (env.code !== CODE_OK || !data || !Array.isArray(data.messages)) return { failed: true };
  const frames = data.messages.filter((m) => m && typeof m === 'object' && typeof m.id === 'string' && m.id);
  return { messages: frames.reverse(), more: data.more === true }; // the server sends newest first
}

// Adds a page's messages; returns how many were new.
function mergePage(log, frames) {
  let added = 0;
  for (const frame of frames) {
    if (insertMessage(log, historyMessage(log, frame)) >= 0) added += 1;
  }
  return added;
}

// The latest page: on opening a room or a private conversation, after a gap or a reconnect.
async function loadNewest(log) {
  const first = log.history !== 'loaded';
  if (first) {
    log.history = 'loading';
    if (isShown(log)) renderMessages();
  }
  const room = log.kind === 'room' ? state.rooms.get(log.key) : null;
  // The page's newest id is safe as a `since` when the room was subscribed before the request
  // (anything newer comes on the socket) or is not yet (the subscribe resumes after it); not while
  // a subscribe is on its way (its answer brings another page).
  const safe = room !== null && room !== undefined && !room.subscribing;
  const page = await fetchHistory(log);
  if (!page) return;
  if (page.failed) {
    if (first) log.history = 'failed';
  } else {
    mergePage(log, page.messages);
    if (first) log.more = page.more; // a reload keeps what paging already found out
    log.history = 'loaded';
    if (safe && page.messages.length) noteRoomId(room, page.messages[page.messages.length - 1].id);
  }
  if (isShown(log)) renderMessages(first ? 'bottom' : 'keep');
}

// The page before our oldest message: scrolling up, or the "Load older messages" button.
async function loadOlder(log, asked = false) {
  if (!log.more || log.olderBusy || (log.olderFailed && !asked)) return;
  const before = oldestId(log);
  if (!before) return;
  log.olderBusy = true;
  log.olderFailed = false;
  if (isShown(log)) renderMessages('keep');
  const page = await fetchHistory(log, before);
  log.olderBusy = false;
  if (!page) return;
  if (page.failed) {
    log.olderFailed = true; // the button stays for a retry
  } else {
    const added = mergePage(log, page.messages);
    log.more = page.more && added > 0; // a page with nothing new cannot lead further back
  }
  if (isShown(log)) renderMessages('keep');
}

// ---------------------------------------------------------------------------
// Sending: over the socket, shown at once as pending, then sent (with the server's id) or failed
// ---------------------------------------------------------------------------

function nextMid() {
  state.midSeq += 1;
  return `${state.midPrefix}-${state.midSeq}`;
}

function sendMessage() {
  if (!state.token || !state.me) return;
  const input = $('msg-input');
  const text = input.value.trim();
  if (!text) return;
  $('send-error').textContent = '';
  const maxLength = Number(state.limits?.message_length);
  if (Number.isInteger(maxLength) && [...text].length > maxLength) {
    $('send-error').textContent = `A message has at most ${maxLength} characters`; // keep the text
    return;
  }
  const view = state.view;
  const target = view.kind === 'room' ? { room: view.roomId } : { to: Number(view.userId) };
  const log = view.kind === 'room' ? state.rooms.get(view.roomId)?.log : privateConversation(view.userId).log;
  if (!log) return;
  const message = {
    id: '',
    fromUserId: state.me.userId,
    fromName: state.me.userName,
    text,
    own: true,
    status: 'pending',
    error: '',
    ...timeFields(''),
  };
  const entry = { mid: nextMid(), cmd: view.kind === 'room' ? 'publish' : 'send', target, log, message, inFlight: false, failed: false, timer: null };
  message.mid = entry.mid;
  state.outbox.set(entry.mid, entry);
  const index = insertMessage(log, message);
  if (view.kind === 'private') {
    const conv = state.privates.get(view.userId);
    conv.last = Date.now();
    renderConversations();
  }
  showInserted(log, index);
  input.value = '';
  input.focus();
  state.typingSentAt.delete(typingKey(view)); // the next keystroke is news again
  armSendTimeout(entry);
  transmit(entry);
}

// Sends (again: with the same mid, which the server stores once) unless it is on its way.
function transmit(entry) {
  if (entry.inFlight || entry.failed || !state.outbox.has(entry.mid)) return;
  const sent = command(entry.cmd, { ...entry.target, msg: entry.message.text, mid: entry.mid }, (reply) => {
    entry.inFlight = false;
    if (reply) onSendReply(entry, reply); // null: the socket went; the next welcome sends it again
  });
  entry.inFlight = sent;
}

function armSendTimeout(entry) {
  clearTimeout(entry.timer);
  entry.timer = setTimeout(() => failSend(entry, 'No answer from the server'), state.sendTimeoutMs);
}

function onSendReply(entry, reply) {
  if (reply.result) {
    if (typeof reply.result.id === 'string' && reply.result.id) settleSend(entry, reply.result.id);
    return;
  }
  const code = reply.error.code;
  if (!state.outbox.has(entry.mid)) return;
  if (SEND_RETRY_MS[code] && !entry.failed) {
    setTimeout(() => transmit(entry), SEND_RETRY_MS[code]); // the timeout still bounds it
    return;
  }
  // session_ended: the close follows and ends the session; anything else is this message's failure
  if (code !== ERROR_SESSION_ENDED) failSend(entry, errorText(reply.error));
}

// The result came: the message has its id. Its event may have come first (held, or shown when the
// hold ran out) and history may have it too: one copy stays.
function settleSend(entry, id) {
  clearTimeout(entry.timer);
  state.outbox.delete(entry.mid);
  const { log, message } = entry;
  const held = state.heldEchoes.get(id);
  if (held) {
    clearTimeout(held.timer);
    state.heldEchoes.delete(id);
  }
  removeMessage(log, message);
  if (log.ids.has(id)) {
    const copy = log.messages.find((m) => m.id === id);
    if (copy) copy.status = 'sent';
  } else {
    message.id = id;
    message.status = 'sent';
    message.error = '';
    insertMessage(log, message);
  }
  if (isShown(log)) renderMessages('keep');
}

function failSend(entry, reason) {
  clearTimeout(entry.timer);
  if (!state.outbox.has(entry.mid) || entry.failed) return;
  entry.failed = true;
  entry.message.status = 'failed';
  entry.message.error = reason;
  if (isShown(entry.log)) renderMessages('keep');
  announce('A message was not sent');
  for (const id of [...state.heldEchoes.keys()]) releaseEcho(id); // those nothing waits for now show
}

// The Retry button of a failed message: the same mid again, so it is stored once at most.
function retrySend(mid) {
  const entry = state.outbox.get(mid);
  if (!entry || !entry.failed) return;
  entry.failed = false;
  entry.message.status = 'pending';
  entry.message.error = '';
  if (isShown(entry.log)) renderMessages('keep');
  armSendTimeout(entry);
  transmit(entry);
  if (!state.ws && state.token) reconnectNow();
}

// Whether a message of ours in this log waits for its result (and may be the one an event is about).
function awaitingResult(log) {
  for (const entry of state.outbox.values()) {
    if (entry.log === log && !entry.failed) return true;
  }
  return false;
}

// Our own message's event, before the result of the command that sent it: held, so that it does
// not show beside the pending copy; the result (on this socket, or the same mid's on the next one)
// takes it over. Held while any of ours there waits for a result: they end sent or failed.
function holdEcho(log, message) {
  if (!message.own || log.ids.has(message.id) || state.heldEchoes.has(message.id)) return false;
  if (!awaitingResult(log)) return false;
  const timer = setTimeout(() => releaseEcho(message.id), ECHO_HOLD_MS);
  state.heldEchoes.set(message.id, { log, message, timer });
  return true;
}

// Shows a held event, once none of ours there waits for a result any more.
function releaseEcho(id) {
  const held = state.heldEchoes.get(id);
  if (!held) return;
  clearTimeout(held.timer);
  const { log, message } = held;
  if (isCurrentLog(log) && awaitingResult(log)) {
    held.timer = setTimeout(() => releaseEcho(id), ECHO_HOLD_MS);
    return;
  }
  state.heldEchoes.delete(id);
  if (!isCurrentLog(log)) return;
  if (log.kind === 'room') addRoomMessage(state.rooms.get(log.key), message);
  else addPrivate(state.privates.get(log.key), message);
}

function dropHeldEchoes() {
  for (const held of state.heldEchoes.values()) clearTimeout(held.timer);
  state.heldEchoes.clear();
}

// ---------------------------------------------------------------------------
// Typing
// ---------------------------------------------------------------------------

function typingKey(view) {
  return view.kind === 'room' ? `room:${view.roomId}` : `user:${view.userId}`;
}

function onInput() {
  if (!state.welcomed || $('msg-input').value.trim() === '') return;
  const view = state.view;
  const key = typingKey(view);
  const now = Date.now();
  if (now - (state.typingSentAt.get(key) || 0) < TYPING_SEND_MS) return;
  if (view.kind === 'room' && !state.rooms.get(view.roomId)?.subscribed) return;
  const target = view.kind === 'room' ? { room: view.roomId } : { to: Number(view.userId) };
  if (command('typing', target)) state.typingSentAt.set(key, now);
}

function onTyping(frame) {
  if (!state.me) return;
  const from = frame.from && typeof frame.from === 'object' ? frame.from : null;
  if (!from || from.id === undefined || String(from.id) === state.me.userId) return;
  const target = frame.room !== undefined
    ? state.rooms.get(Number(frame.room))
    : privateConversation(String(frame.user ?? from.id), String(from.name ?? ''));
  if (!target) return;
  target.typing.set(String(from.id), { name: String(from.name ?? '') || `user ${from.id}`, until: Date.now() + TYPING_SHOW_MS });
  renderTyping();
}

function currentConversation() {
  return state.view.kind === 'room' ? state.rooms.get(state.view.roomId) : state.privates.get(state.view.userId);
}

function renderTyping() {
  clearTimeout(state.typingTimer);
  state.typingTimer = null;
  const conv = currentConversation();
  const now = Date.now();
  const names = [];
  let soonest = Infinity;
  if (conv) {
    for (const [id, who] of conv.typing) {
      if (who.until <= now) {
        conv.typing.delete(id);
      } else {
        names.push(who.name);
        soonest = Math.min(soonest, who.until);
      }
    }
  }
  names.sort((a, b) => a.localeCompare(b));
  let text = '';
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = `${names.length} people are typing…`;
  if ($('typing').textContent !== text) $('typing').textContent = text;
  if (soonest !== Infinity) state.typingTimer = setTimeout(renderTyping, soonest - now + 50);
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

function renderAll() {
  renderHeader();
  renderConversations();
  renderMembers();
  renderMessages();
  renderTyping();
  updateTitle();
}

function renderHeader() {
  const input = $('msg-input');
  if (state.view.kind === 'private') {
    const conv = state.privates.get(state.view.userId);
    const name = conv ? conv.name : '';
    $('conv-title').textContent = `Private chat with ${name}`;
    input.placeholder = `Private message to ${name}…`;
    $('back-btn').hidden = false;
    $('chat').dataset.view = 'private';
  } else {
    $('conv-title').textContent = `Room ${state.view.roomId}`;
    input.placeholder = `Message room ${state.view.roomId}…`;
    $('back-btn').hidden = true;
    $('chat').dataset.view = 'room';
  }
  if (document.activeElement !== $('room-input')) $('room-input').value = String(state.membersRoomId);
}

function badge(count) {
  const wrap = el('span', 'badge');
  wrap.append(el('span', '', String(count)), el('span', 'visually-hidden', ' unread'));
  return wrap;
}

function renderConversations() {
  const items = [];
  for (const room of state.rooms.values()) {
    const li = el('li', 'conv-item');
    const button = el('button', 'conv conv-room');
    button.type = 'button';
    button.dataset.conv = 'room';
    button.dataset.roomId = String(room.roomId);
    button.append(el('span', 'conv-name', `Room ${room.roomId}`));
    if (isShownRoom(room)) button.setAttribute('aria-current', 'true');
    if (room.unread > 0) {
      button.classList.add('unread');
      button.append(badge(room.unread));
    }
    li.append(button);
    if (state.rooms.size > 1) {
      const close = el('button', 'conv-close', '×');
      close.type = 'button';
      close.dataset.roomId = String(room.roomId);
      close.setAttribute('aria-label', `Leave room ${room.roomId}`);
      close.title = `Leave room ${room.roomId}`;
      li.append(close);
    }
    items.push(li);
  }
  const convs = [...state.privates.values()].filter((conv) => conv.listed || conv.log.messages.length > 0)
    .sort((a, b) => b.last - a.last);
  for (const conv of convs) {
    const li = el('li', 'conv-item');
    const button = el('button', 'conv conv-private');
    button.type = 'button';
    button.dataset.conv = 'private';
    button.dataset.userId = conv.userId;
    button.title = `Private chat with ${conv.name}`;
    button.append(el('span', 'visually-hidden', 'Private chat with '), el('span', 'conv-name', conv.name));
    if (!isOnline(conv.userId)) button.classList.add('away');
    if (conv.unread > 0) {
      button.classList.add('unread');
      button.append(badge(conv.unread));
    }
    if (isViewing(conv.userId)) button.setAttribute('aria-current', 'true');
    li.append(button);
    items.push(li);
  }
  $('conversations').replaceChildren(...items);
}

function renderMembers() {
  const room = state.rooms.get(state.membersRoomId);
  const members = room ? room.members : new Map();
  $('members-room').textContent = room ? `room ${room.roomId}` : '';
  $('online-count').textContent = String(room ? room.count : 0);
  const entries = [...members.entries()].sort((a, b) => a[1].localeCompare(b[1]) || a[0].localeCompare(b[0]));
  const items = entries.map(([id, name]) => {
    const li = el('li', 'member');
    li.dataset.userId = id;
    if (state.me && id === state.me.userId) {
      li.classList.add('me');
      li.append(el('span', 'member-name', name), el('span', 'member-you', ' (you)'));
      return li;
    }
    const button = el('button', 'member-btn');
    button.type = 'button';
    button.dataset.userId = id;
    button.title = `Private chat with ${name}`;
    button.append(el('span', 'member-name', name));
    const conv = state.privates.get(id);
    if (conv && conv.unread > 0) {
      button.classList.add('unread');
      button.append(badge(conv.unread));
    }
    if (isViewing(id)) button.setAttribute('aria-current', 'true');
    li.append(button);
    return li;
  });
  $('members').replaceChildren(...items);
}

// The log of the open conversation (null only before a session starts).
function currentLog() {
  const conv = currentConversation();
  return conv ? conv.log : null;
}

function isShown(log) {
  return log !== null && log === currentLog() && !$('chat').hidden;
}

// A message went into a log at `index`: the common case (the newest, nothing trimmed) appends
// one node; anything else draws the list again where the user was.
function showInserted(log, index) {
  const newest = index === log.messages.length - 1;
  const trimmed = trimLog(log);
  if (!isShown(log)) return;
  if (newest && !trimmed) appendMessage(log.messages[log.messages.length - 1]);
  else renderMessages('keep');
}

function emptyText(log) {
  if (log.history === 'loading' || log.history === 'none') return 'Loading messages…';
  if (log.kind === 'private') return 'No private messages yet. Say hello!';
  return log.history === 'loaded'
    ? 'No messages in this room yet.'
    : 'No messages yet. Messages sent to this room while you are here appear below.';
}

// Above the messages: older ones being fetched, or a button to fetch them. Scrolling up to the top
// fetches them too; the button is for the keyboard, and for phones, where the page scrolls rather
// than the list.
function olderNode(log) {
  if (log.olderBusy) return el('p', 'older-status', 'Loading older messages…');
  if (!log.more) return null;
  const button = el('button', 'btn btn-small btn-secondary older-btn', 'Load older messages');
  button.type = 'button';
  return button;
}

// scroll 'bottom': show the newest; 'keep': the same messages stay in view (older ones went in
// above them), or the newest if the user was following them.
function renderMessages(scroll = 'bottom') {
  const list = $('messages');
  const fromBottom = list.scrollHeight - list.scrollTop;
  const follow = scroll === 'bottom' || isNearBottom(list);
  const log = currentLog();
  const nodes = log ? log.messages.map(messageNode) : [];
  if (nodes.length === 0) nodes.push(el('p', 'empty', log ? emptyText(log) : ''));
  const older = log && olderNode(log);
  if (older) nodes.unshift(older);
  list.replaceChildren(...nodes);
  list.scrollTop = follow ? list.scrollHeight : list.scrollHeight - fromBottom;
}

function onMessagesScroll() {
  const log = currentLog();
  if (log && $('messages').scrollTop < OLDER_TRIGGER_PX) loadOlder(log);
}

const STATUS_TEXT = { pending: 'sending…', failed: 'not sent' };

function messageNode(message) {
  const item = el('article', 'msg');
  if (message.own) item.classList.add('own');
  if (state.view.kind === 'private') item.classList.add('private');
  item.dataset.fromUserId = message.fromUserId;
  if (message.id) item.dataset.id = message.id;
  if (message.own) item.dataset.status = message.status || 'sent';

  const meta = el('div', 'msg-meta');
  const from = el('span', 'msg-from', message.fromName);
  if (message.own) from.append(el('span', 'msg-you', ' (you)'));
  const time = el('time', 'msg-time', message.time);
  if (message.datetime) time.dateTime = message.datetime;
  time.title = message.full;
  meta.append(from, time);
  item.append(meta, el('p', 'msg-text', message.text));

  if (message.own && STATUS_TEXT[message.status]) {
    const status = el('p', 'msg-status', STATUS_TEXT[message.status]);
    if (message.error) status.title = message.error;
    if (message.status === 'failed') {
      const retry = el('button', 'btn btn-small btn-secondary msg-retry', 'Retry');
      retry.type = 'button';
      retry.dataset.mid = message.mid;
      status.append(' ', retry);
      if (message.error) status.append(el('span', 'visually-hidden', `: ${message.error}`));
    }
    item.append(status);
  }
  return item;
}

function isNearBottom(node) {
  return node.scrollHeight - node.scrollTop - node.clientHeight < 80;
}

function appendMessage(message) {
  const list = $('messages');
  const stick = isNearBottom(list);
  const empty = list.querySelector('.empty');
  if (empty) empty.remove();
  list.append(messageNode(message));
  // Follow new messages unless the user scrolled up to read.
  if (stick || message.own) list.scrollTop = list.scrollHeight;
}

function updateTitle() {
  let unread = 0;
  for (const conv of allConversations()) unread += conv.unread;
  document.title = unread > 0 ? `(${unread}) gochat` : 'gochat';
}

function openView(view) {
  state.view = view;
  const conv = currentConversation();
  if (conv) conv.unread = 0;
  if (view.kind === 'room') {
    state.membersRoomId = view.roomId;
    syncHash();
  }
  $('send-error').textContent = '';
  renderAll();
  $('msg-input').focus();
}

function openPrivate(userId) {
  if (!state.me || userId === state.me.userId) return;
  const conv = privateConversation(userId, memberName(userId));
  conv.listed = true;
  openView({ kind: 'private', userId });
  // Its history once per session (again after a failure); live events keep it current after that.
  if (conv.log.history === 'none' || conv.log.history === 'failed') loadNewest(conv.log);
}

// ---------------------------------------------------------------------------
// Wiring
// ---------------------------------------------------------------------------

function bindEvents() {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    authenticate('/user/login');
  });
  $('register-btn').addEventListener('click', () => authenticate('/user/register'));
  $('logout-btn').addEventListener('click', logout);
  $('retry-btn').addEventListener('click', reconnectNow);
  $('back-btn').addEventListener('click', () => openView({ kind: 'room', roomId: state.membersRoomId }));
  $('send-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sendMessage();
  });
  $('msg-input').addEventListener('input', onInput);
  $('room-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const roomId = parseRoom($('room-input').value);
    if (roomId === null) {
      $('room-error').textContent = `A room is a whole number from 1 to ${MAX_ROOM}`;
      return;
    }
    showRoom(roomId);
  });
  $('conversations').addEventListener('click', (ev) => {
    const close = ev.target.closest('button.conv-close');
    if (close) {
      closeRoomTab(Number(close.dataset.roomId));
      return;
    }
    const button = ev.target.closest('button.conv');
    if (!button) return;
    if (button.dataset.conv === 'room') showRoom(Number(button.dataset.roomId));
    else openPrivate(button.dataset.userId);
  });
  $('members').addEventListener('click', (ev) => {
    const button = ev.target.closest('button.member-btn');
    if (button) openPrivate(button.dataset.userId);
  });
  $('messages').addEventListener('scroll', onMessagesScroll, { passive: true });
  $('messages').addEventListener('click', (ev) => {
    const retry = ev.target.closest('button.msg-retry');
    if (retry) {
      retrySend(retry.dataset.mid);
      return;
    }
    const log = currentLog();
    if (log && ev.target.closest('button.older-btn')) loadOlder(log, true);
  });
  window.addEventListener('hashchange', () => {
    if (!state.me) return;
    const roomId = roomFromHash() ?? DEFAULT_ROOM;
    if (state.view.kind !== 'room' || roomId !== state.view.roomId) showRoom(roomId);
  });
  // Back online: do not wait for the backoff.
  window.addEventListener('online', reconnectNow);
  // Another tab logged in or out: follow it (one browser profile, one user).
  window.addEventListener('storage', (ev) => {
    if (ev.key !== null && ev.key !== TOKEN_KEY) return;
    const token = localStorage.getItem(TOKEN_KEY);
    if (token === state.token) return;
    if (token) startSession(token);
    else if (state.token) endSession();
  });
}

async function init() {
  bindEvents();
  showLoading();
  await loadConfig();
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) {
    await startSession(token);
  } else {
    showLogin();
  }
}

document.addEventListener('DOMContentLoaded', init);
