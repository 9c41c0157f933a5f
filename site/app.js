// gochat-py browser client: log in / register, room chat, private chat, over HTTP + WebSocket.
// Plain ES2020, no dependencies, no build step. All user-provided text goes through textContent.
//
// Wire protocol (the original gochat's, plus kept messages):
//   HTTP  POST <api>/user/login|register|checkAuth|logout, /push/pushRoom, /push/push, /push/getRoomInfo,
//         /push/history (a room's kept messages), /push/privateHistory (a private conversation's)
//   WS    <ws>: first message {"authToken","roomId","since"}; later messages are ignored by the server,
//         so changing rooms means a new socket. Frames: op 2 private, op 3 room, op 4 count,
//         op 5 members, op 7 history gap. With `since` present, op-2/op-3 frames carry an "id"; with
//         since = an id we saw, the server first sends what we missed after it (room and private).
'use strict';

const TOKEN_KEY = 'authToken';          // the original UI's localStorage key
const DEFAULT_ROOM = 1;
const MAX_ROOM = 2147483647;
const CODE_OK = 0;
const CODE_SESSION_ERROR = 40000;
const CLOSE_POLICY = 1008;              // bad token, auth timeout, too slow
const BACKOFF_START_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const STABLE_MS = 10000;                // a socket open this long resets the backoff
const ROOM_INFO_FALLBACK_MS = 2000;     // servers that do not broadcast members on join
const MAX_KEPT = 500;                   // messages kept per conversation (older ones page in again)
const HISTORY_PAGE = 50;                // messages per history request
const OLDER_TRIGGER_PX = 40;            // scrolled this close to the top: fetch the page before
const LAST_ID_KEY = 'gochat.lastId.';   // + user id: the newest message id this browser saw

const state = {
  apiUrl: '',
  wsUrl: '',
  token: null,
  me: null,                 // {userId: string, userName} once checkAuth succeeds
  roomId: DEFAULT_ROOM,
  members: new Map(),       // userId (string) -> userName, from the latest op-5 frame
  view: { kind: 'room' },   // or {kind: 'private', userId}
  roomLog: null,            // the current room's log (see newLog); a room switch starts a new one
  roomUnread: 0,            // room messages that came while a private chat was open
  privates: new Map(),      // userId -> {userId, name, log, unread, last}
  lastId: '',               // newest message id seen (frames, room history): the next join's `since`
  readMark: '',             // lastId as this browser left it last time: kept privates up to it were seen
  localSeq: 0,              // orders our own private messages, which have no id until history has them
  ws: null,                 // the current socket; events from older sockets are ignored
  reconnectTimer: null,
  countdownTimer: null,
  stableTimer: null,
  roomInfoTimer: null,
  reconnectAttempt: 0,
  reconnectAt: 0,
  authBusy: false,
  sendBusy: false,
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
  state.lastId = storedLastId();
  state.readMark = state.lastId;
  showChat();
  enterRoom();
}

function forgetToken() {
  if (localStorage.getItem(TOKEN_KEY) === state.token) localStorage.removeItem(TOKEN_KEY);
}

function resetChat() {
  state.members.clear();
  state.roomLog = newLog('room', state.roomId);
  state.privates.clear();
  state.lastId = '';
  state.readMark = '';
  state.roomUnread = 0;
  state.view = { kind: 'room' };
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
// WebSocket: one socket per room, reconnect with exponential backoff
// ---------------------------------------------------------------------------

// Show the room's latest messages, then join it. History first: the join's `since` is then at
// least the newest id of that page, so whatever comes after the page reaches us as the socket's
// backlog, and nothing falls between the two.
async function enterRoom() {
  const token = state.token;
  const log = state.roomLog;
  setConnState('connecting');
  await loadNewest(log); // a failure (api down, old server) still joins: live messages then
  if (token !== state.token || log !== state.roomLog) return; // logged out or moved on meanwhile
  connect();
}

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
  const roomId = state.roomId;
  state.ws = ws;
  ws.onopen = () => {
    if (ws !== state.ws) return;
    // since "" opts in to ids without a backlog; an id asks for everything after it.
    ws.send(JSON.stringify({ authToken: token, roomId, since: state.lastId }));
    setConnState('connected');
    state.stableTimer = setTimeout(() => { state.reconnectAttempt = 0; }, STABLE_MS);
    // Our server broadcasts the member list on every join; ask for it if none comes.
    state.roomInfoTimer = setTimeout(requestRoomInfo, ROOM_INFO_FALLBACK_MS);
  };
  ws.onmessage = (ev) => { if (ws === state.ws) handleFrame(ev.data); };
  ws.onclose = (ev) => onSocketClose(ws, ev);
  ws.onerror = () => {}; // always followed by close, which drives the reconnect
}

function clearSocketTimers() {
  clearTimeout(state.stableTimer);
  clearTimeout(state.roomInfoTimer);
  state.stableTimer = null;
  state.roomInfoTimer = null;
}

async function onSocketClose(ws, ev) {
  if (ws !== state.ws) return; // replaced, or closed on purpose
  state.ws = null;
  clearSocketTimers();
  setConnState('disconnected');
  if (ev.code === CLOSE_POLICY && state.token) {
    // Refused join: maybe the token died (logged in elsewhere, logged out, expired).
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
  state.reconnectTimer = setTimeout(connect, delay);
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
  clearSocketTimers();
  state.reconnectAttempt = 0;
  const ws = state.ws;
  state.ws = null;
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

async function requestRoomInfo() {
  state.roomInfoTimer = null;
  const token = state.token;
  if (!token) return;
  const env = await api('/push/getRoomInfo', { authToken: token, roomId: state.roomId });
  // code 1 ("rpc get room info fail!") only means the room is empty.
  handleSessionError(env, token);
}

// ---------------------------------------------------------------------------
// Rooms
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

function switchRoom(roomId) {
  $('room-error').textContent = '';
  if (roomId === state.roomId) {
    openView({ kind: 'room' });
    if (!state.ws && !state.reconnectTimer) connect();
    return;
  }
  state.roomId = roomId;
  const hash = roomId === DEFAULT_ROOM ? '' : `#room=${roomId}`;
  if (location.hash !== hash) history.replaceState(null, '', location.pathname + location.search + hash);
  // The server honours only the first message of a socket: a new room needs a new socket.
  disconnect();
  state.members.clear();
  state.roomLog = newLog('room', roomId); // its history is loaded again: nothing stale, no holes
  state.roomUnread = 0;
  $('online-count').textContent = '0';
  state.view = { kind: 'room' };
  renderAll();
  if (state.token) enterRoom();
  announce(`Now in room ${roomId}`);
}

// ---------------------------------------------------------------------------
// Incoming frames
// ---------------------------------------------------------------------------

function parseFrame(data) {
  if (typeof data !== 'string' || data.trim() === '') return null; // the original's empty frame
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
    switch (frame.op) {
      case 2: receivePrivate(frame); break;
      case 3: receiveRoom(frame); break;
      case 4: setOnlineCount(frame.count); break;
      case 5: applyRoomInfo(frame); break;
      case 7: onHistoryGap(frame); break;
      default: break; // unknown ops are ignored by design
    }
  } catch (err) {
    console.warn('bad frame', err); // a malformed frame must never break the socket handler
  }
}

function setOnlineCount(count) {
  const n = Number(count ?? 0); // op 4 omits a zero count
  $('online-count').textContent = String(Number.isFinite(n) && n >= 0 ? n : 0);
}

function applyRoomInfo(frame) {
  if (frame.roomId !== undefined && Number(frame.roomId) !== state.roomId) return;
  clearTimeout(state.roomInfoTimer);
  state.roomInfoTimer = null;
  const info = frame.roomUserInfo && typeof frame.roomUserInfo === 'object' ? frame.roomUserInfo : {};
  state.members = new Map(Object.entries(info).map(([id, name]) => [String(id), String(name ?? '')]));
  setOnlineCount(frame.count ?? state.members.size);
  for (const [id, name] of state.members) {
    const conv = state.privates.get(id);
    if (conv && name) conv.name = name;
  }
  renderMembers();
}

function pad(n) {
  return String(n).padStart(2, '0');
}

function localStamp(d = new Date()) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// "YYYY-MM-DD HH:MM:SS" (op 3's createTime, server time) -> what we show and keep. Without a stamp,
// a message arriving now shows the local time; one from history shows none rather than a wrong one.
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

// Remember the newest id seen, here and for the next visit (its privates up to it were seen).
function noteId(id) {
  if (!id || !state.me || compareIds(id, state.lastId) <= 0) return;
  state.lastId = id;
  try {
    localStorage.setItem(LAST_ID_KEY + state.me.userId, id);
  } catch (_) {
    // Storage full or disabled: the next visit just counts a few more kept privates as unread.
  }
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
    ids: new Set(),         // de-duplication: history, backlog and live frames overlap
    history: 'none',        // latest page: 'none' | 'loading' | 'loaded' | 'failed'
    more: false,            // the server keeps messages older than our oldest
    olderBusy: false,
    olderFailed: false,     // stops paging on its own until the user asks again
  };
}

// A message with an id sorts by it. One without (our own private messages, which the server does
// not echo to us; every frame of a server without ids) sorts right after the newest id known when
// it came (its anchor), in arrival order.
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
    const newest = newestId(log);
    message.anchor = compareIds(newest, state.lastId) > 0 ? newest : state.lastId;
    state.localSeq += 1;
    message.seq = state.localSeq;
  }
  let i = log.messages.length;
  while (i > 0 && compareMessages(log.messages[i - 1], message) > 0) i -= 1;
  log.messages.splice(i, 0, message);
  return i;
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
// up there. Returns how many went.
function trimLog(log) {
  const excess = log.messages.length - MAX_KEPT;
  if (excess <= 0 || (isShown(log) && !isNearBottom($('messages')))) return 0;
  for (const message of log.messages.splice(0, excess)) {
    if (message.id) {
      log.ids.delete(message.id);
      log.more = true;
    }
  }
  return excess;
}

function roomMessage(frame, live) {
  const id = typeof frame.id === 'string' ? frame.id : '';
  return {
    id,
    fromUserId: String(frame.fromUserId ?? ''),
    fromName: String(frame.fromUserName ?? '') || `user ${frame.fromUserId ?? '?'}`,
    text: String(frame.msg ?? ''),
    own: state.me !== null && String(frame.fromUserId) === state.me.userId,
    ...timeFields(frame.createTime, live),
  };
}

function privateMessage(conv, frame, live) {
  const id = typeof frame.id === 'string' ? frame.id : '';
  const own = String(frame.fromUserId ?? '') === state.me.userId;
  return {
    id,
    fromUserId: String(frame.fromUserId ?? ''),
    fromName: own ? state.me.userName : String(frame.fromUserName ?? '') || conv.name,
    text: String(frame.msg ?? ''),
    own,
    ...timeFields(frame.createTime, live), // empty for private messages: the local time is shown
  };
}

function receiveRoom(frame) {
  const roomId = Number(frame.roomId) || state.roomId;
  if (roomId !== state.roomId) return; // a late frame of a room we left
  const message = roomMessage(frame, true);
  noteId(message.id);
  const log = state.roomLog;
  const index = insertMessage(log, message);
  if (index < 0) return; // seen already (history, or the backlog of an earlier socket)
  if (state.view.kind === 'room') {
    showInserted(log, index);
  } else if (!message.own) {
    trimLog(log);
    state.roomUnread += 1;
    renderConversations();
    updateTitle();
  }
}

function privateConversation(userId, name) {
  let conv = state.privates.get(userId);
  if (!conv) {
    conv = { userId, name: name || state.members.get(userId) || `user ${userId}`, log: newLog('private', userId), unread: 0, last: 0 };
    state.privates.set(userId, conv);
  } else if (name) {
    conv.name = name;
  }
  return conv;
}

function receivePrivate(frame) {
  if (!state.me) return;
  const from = String(frame.fromUserId ?? '');
  const own = from === state.me.userId; // our own message seen by another of our sockets
  const otherId = own ? String(frame.toUserId ?? '') : from;
  if (!otherId || otherId === state.me.userId) return;
  const otherName = String((own ? frame.toUserName : frame.fromUserName) ?? '');
  const conv = privateConversation(otherId, otherName);
  const message = privateMessage(conv, frame, true);
  noteId(message.id);
  if (!addPrivateMessage(conv, message)) return;
  // Sent while we were away (offline delivery, a resumed backlog) counts as unread too; only what
  // this browser already saw on an earlier visit (a backlog after a too-old `since`) does not.
  const seenBefore = message.id !== '' && compareIds(message.id, state.readMark) <= 0;
  if (!own && !isViewing(conv.userId) && !seenBefore) {
    conv.unread += 1;
    announce(`New private message from ${conv.name}`);
  }
  renderConversations();
  renderMembers();
  updateTitle();
}

// False when the message was there already.
function addPrivateMessage(conv, message) {
  const index = insertMessage(conv.log, message);
  if (index < 0) return false;
  conv.last = Date.now();
  showInserted(conv.log, index);
  return true;
}

// Our own private message, accepted by the api: no id until the conversation's history has it.
function addOwnPrivate(conv, text) {
  addPrivateMessage(conv, {
    id: '',
    fromUserId: state.me.userId,
    fromName: state.me.userName,
    text,
    own: true,
    ...timeFields(''),
  });
}

function isViewing(userId) {
  return state.view.kind === 'private' && state.view.userId === userId;
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
  if (log.kind === 'room') return log === state.roomLog;
  const conv = state.privates.get(log.key);
  return conv !== undefined && conv.log === log;
}

// One page of a log's history: {messages: [frame…] oldest first, more}, {failed: true}, or null
// when the answer no longer matters (logged out, or the log was replaced meanwhile).
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

function toMessage(log, frame) {
  return log.kind === 'room'
    ? roomMessage(frame, false)
    : privateMessage(privateConversation(log.key), frame, false);
}

// Adds a page's messages; returns how many were new.
function mergePage(log, frames) {
  let added = 0;
  for (const frame of frames) {
    if (insertMessage(log, toMessage(log, frame)) >= 0) added += 1;
  }
  return added;
}

// Our own private messages shown without an id are in this page once the server kept them:
// the page's copy (with its id) replaces ours. Those not in it were sent after the page.
function settleOwnMessages(log, frames) {
  const pending = log.messages.filter((message) => !message.id && message.own);
  if (pending.length === 0 || frames.length === 0) return;
  for (const frame of frames) {
    // ours, and not one we have with its id already (the same text may have been sent twice)
    if (String(frame.fromUserId ?? '') !== state.me.userId || log.ids.has(frame.id)) continue;
    const index = pending.findIndex((message) => message.text === String(frame.msg ?? ''));
    if (index >= 0) pending.splice(index, 1)[0].settled = true;
  }
  log.messages = log.messages.filter((message) => !message.settled);
  const newest = frames[frames.length - 1].id;
  for (const message of pending) {
    if (compareIds(message.anchor, newest) < 0) message.anchor = newest;
  }
  log.messages.sort(compareMessages);
}

// The latest page: on entering a room, opening a private conversation, after a history gap.
async function loadNewest(log) {
  const first = log.history !== 'loaded';
  if (first) {
    log.history = 'loading';
    if (isShown(log)) renderMessages();
  }
  const page = await fetchHistory(log);
  if (!page) return;
  if (page.failed) {
    if (first) log.history = 'failed';
  } else {
    settleOwnMessages(log, page.messages);
    mergePage(log, page.messages);
    if (first) log.more = page.more; // a reload keeps what paging already found out
    log.history = 'loaded';
    // Safe as a `since`: anything newer than this page comes after the request, so after the join.
    if (log.kind === 'room' && page.messages.length) noteId(page.messages[page.messages.length - 1].id);
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

// op 7: the server could not resume from our `since` (unknown, or older than it keeps). What it
// kept follows on the socket; the latest page over HTTP is merged in as well.
function onHistoryGap(frame) {
  // Not an id of the server's (say a stored one from another deployment): forget it, or every
  // later join would ask for it again, since noteId only ever moves lastId forward.
  if (frame.reason === 'unknown') {
    if (state.readMark === state.lastId) state.readMark = ''; // the stored one: no mark at all
    state.lastId = '';
  }
  loadNewest(state.roomLog);
  if (state.view.kind === 'private') {
    const conv = state.privates.get(state.view.userId);
    if (conv) loadNewest(conv.log);
  }
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

function renderAll() {
  renderHeader();
  renderConversations();
  renderMembers();
  renderMessages();
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
    $('conv-title').textContent = `Room ${state.roomId}`;
    input.placeholder = `Message room ${state.roomId}…`;
    $('back-btn').hidden = true;
    $('chat').dataset.view = 'room';
  }
  if (document.activeElement !== $('room-input')) $('room-input').value = String(state.roomId);
}

function badge(count) {
  const wrap = el('span', 'badge');
  wrap.append(el('span', '', String(count)), el('span', 'visually-hidden', ' unread'));
  return wrap;
}

function renderConversations() {
  const items = [];
  const room = el('button', 'conv conv-room');
  room.type = 'button';
  room.dataset.conv = 'room';
  room.append(el('span', 'conv-name', `Room ${state.roomId}`));
  if (state.view.kind === 'room') room.setAttribute('aria-current', 'true');
  if (state.roomUnread > 0) {
    room.classList.add('unread');
    room.append(badge(state.roomUnread));
  }
  items.push(room);

  const convs = [...state.privates.values()].sort((a, b) => b.last - a.last);
  for (const conv of convs) {
    const button = el('button', 'conv conv-private');
    button.type = 'button';
    button.dataset.conv = 'private';
    button.dataset.userId = conv.userId;
    button.title = `Private chat with ${conv.name}`;
    button.append(el('span', 'visually-hidden', 'Private chat with '), el('span', 'conv-name', conv.name));
    if (!state.members.has(conv.userId)) button.classList.add('away');
    if (conv.unread > 0) {
      button.classList.add('unread');
      button.append(badge(conv.unread));
    }
    if (isViewing(conv.userId)) button.setAttribute('aria-current', 'true');
    items.push(button);
  }
  $('conversations').replaceChildren(...items.map((button) => {
    const li = el('li');
    li.append(button);
    return li;
  }));
}

function renderMembers() {
  const entries = [...state.members.entries()].sort((a, b) => a[1].localeCompare(b[1]) || a[0].localeCompare(b[0]));
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
  if (state.view.kind === 'private') {
    const conv = state.privates.get(state.view.userId);
    return conv ? conv.log : null;
  }
  return state.roomLog;
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

function messageNode(message) {
  const item = el('article', 'msg');
  if (message.own) item.classList.add('own');
  if (state.view.kind === 'private') item.classList.add('private');
  item.dataset.fromUserId = message.fromUserId;
  if (message.id) item.dataset.id = message.id;

  const meta = el('div', 'msg-meta');
  const from = el('span', 'msg-from', message.fromName);
  if (message.own) from.append(el('span', 'msg-you', ' (you)'));
  const time = el('time', 'msg-time', message.time);
  if (message.datetime) time.dateTime = message.datetime;
  time.title = message.full;
  meta.append(from, time);

  item.append(meta, el('p', 'msg-text', message.text));
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
  let unread = state.roomUnread;
  for (const conv of state.privates.values()) unread += conv.unread;
  document.title = unread > 0 ? `(${unread}) gochat` : 'gochat';
}

function openView(view) {
  state.view = view;
  if (view.kind === 'private') {
    const conv = state.privates.get(view.userId);
    if (conv) conv.unread = 0;
  } else {
    state.roomUnread = 0;
  }
  $('send-error').textContent = '';
  renderAll();
  $('msg-input').focus();
}

function openPrivate(userId) {
  if (!state.me || userId === state.me.userId) return;
  const conv = privateConversation(userId, state.members.get(userId));
  openView({ kind: 'private', userId });
  // Its history once per session (again after a failure); live frames keep it current after that.
  if (conv.log.history === 'none' || conv.log.history === 'failed') loadNewest(conv.log);
}

// ---------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------

async function sendMessage() {
  if (state.sendBusy || !state.token) return;
  const input = $('msg-input');
  const msg = input.value.trim();
  if (!msg) return;
  const view = state.view;
  const token = state.token;
  setSendBusy(true);
  $('send-error').textContent = '';
  let env;
  if (view.kind === 'private') {
    // toUserId is a JSON string on the wire; roomId must be a non-zero int.
    env = await api('/push/push', { authToken: token, msg, toUserId: view.userId, roomId: state.roomId });
  } else {
    env = await api('/push/pushRoom', { authToken: token, msg, roomId: state.roomId });
  }
  setSendBusy(false);
  if (handleSessionError(env, token)) return;
  if (env.code !== CODE_OK) {
    $('send-error').textContent = failureText(env, 'Sending failed'); // keep the text for a retry
    return;
  }
  if (view.kind === 'private') {
    // The server does not echo private messages to their sender: show it here.
    addOwnPrivate(privateConversation(view.userId), msg);
    renderConversations();
  }
  // Room messages come back as op-3 frames, like everyone else's.
  if (input.value.trim() === msg) input.value = '';
  input.focus();
}

function setSendBusy(busy) {
  state.sendBusy = busy;
  $('send-btn').disabled = busy;
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
  $('back-btn').addEventListener('click', () => openView({ kind: 'room' }));
  $('send-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sendMessage();
  });
  $('room-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const roomId = parseRoom($('room-input').value);
    if (roomId === null) {
      $('room-error').textContent = `A room is a whole number from 1 to ${MAX_ROOM}`;
      return;
    }
    switchRoom(roomId);
  });
  $('conversations').addEventListener('click', (ev) => {
    const button = ev.target.closest('button.conv');
    if (!button) return;
    if (button.dataset.conv === 'room') openView({ kind: 'room' });
    else openPrivate(button.dataset.userId);
  });
  $('members').addEventListener('click', (ev) => {
    const button = ev.target.closest('button.member-btn');
    if (button) openPrivate(button.dataset.userId);
  });
  $('messages').addEventListener('scroll', onMessagesScroll, { passive: true });
  $('messages').addEventListener('click', (ev) => {
    const log = currentLog();
    if (log && ev.target.closest('button.older-btn')) loadOlder(log, true);
  });
  window.addEventListener('hashchange', () => {
    const roomId = roomFromHash() ?? DEFAULT_ROOM;
    if (roomId !== state.roomId) switchRoom(roomId);
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
  state.roomId = roomFromHash() ?? DEFAULT_ROOM;
  await loadConfig();
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) {
    await startSession(token);
  } else {
    showLogin();
  }
}

document.addEventListener('DOMContentLoaded', init);
