// gochat-py browser client: login/register, one chat room over HTTP + WebSocket.
// Plain ES2020, no dependencies. All user-provided text goes through textContent.
'use strict';

const ROOM_ID = 1;
const TOKEN_KEY = 'authToken';
const CODE_OK = 0;
const CODE_SESSION_ERROR = 40000;
const BACKOFF_START_MS = 1000;
const BACKOFF_MAX_MS = 30000;

const state = {
  apiUrl: '',
  wsUrl: '',
  token: null,
  me: null,              // {userId, userName} once checkAuth succeeds
  ws: null,              // current socket; events from older sockets are ignored
  reconnectTimer: null,
  reconnectAttempt: 0,
  authBusy: false,
  sendBusy: false,
};

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

// Defaults follow the page's own host so the client works on any machine
// without hard-coded addresses.
function defaultConfig() {
  const host = location.hostname;
  return {
    apiUrl: `${location.protocol}//${host}:7070`,
    wsUrl: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${host}:7000/ws`,
  };
}

function nonEmptyString(value) {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : null;
}

async function loadConfig() {
  const defaults = defaultConfig();
  let cfg = {};
  try {
    const res = await fetch('/config.json', { cache: 'no-store' });
    if (res.ok) cfg = (await res.json()) || {};
  } catch (_) {
    // Missing or malformed config.json is fine: fall back to derived defaults.
  }
  state.apiUrl = (nonEmptyString(cfg.apiUrl) || defaults.apiUrl).replace(/\/+$/, '');
  state.wsUrl = nonEmptyString(cfg.wsUrl) || defaults.wsUrl;
}

// ---------------------------------------------------------------------------
// HTTP API
// ---------------------------------------------------------------------------

// POST a JSON body and always resolve to an envelope {code, data, message},
// so callers only have one failure shape to deal with (network errors included).
async function api(path, body) {
  try {
    const res = await fetch(state.apiUrl + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const env = await res.json();
    if (!env || typeof env !== 'object' || typeof env.code !== 'number') {
      return { code: 1, data: null, message: 'Unexpected server response' };
    }
    return { code: env.code, data: env.data, message: env.message || '' };
  } catch (err) {
    return { code: 1, data: null, message: 'Cannot reach server', network: true };
  }
}

function failureText(env, fallback) {
  return env.message || fallback;
}

// A 40000 from any endpoint means the token is dead: drop the session.
// `token` is the one the request used, so a late reply for an old session
// cannot log out a newer one.
function handleSessionError(env, token) {
  if (env.code !== CODE_SESSION_ERROR) return false;
  if (token !== state.token) return true;
  endSession(failureText(env, 'Session expired, please log in again'));
  return true;
}

// ---------------------------------------------------------------------------
// Views
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
  $('username').focus();
}

function showChat() {
  $('loading').hidden = true;
  $('auth').hidden = true;
  $('auth-error').textContent = '';
  $('me').textContent = `Logged in as ${state.me.userName}`;
  $('session').hidden = false;
  $('chat').hidden = false;
  $('send-error').textContent = '';
  $('msg-input').focus();
}

function resetRoomView() {
  $('messages').replaceChildren();
  $('members').replaceChildren();
  $('online-count').textContent = '0';
  $('msg-input').value = '';
  $('send-error').textContent = '';
}

function setConnState(name) {
  const el = $('conn-state');
  el.textContent = name;
  el.dataset.state = name;
  // Mirror on the wrapper so CSS can colour the status dot.
  if (el.parentElement) el.parentElement.dataset.state = name;
}

// ---------------------------------------------------------------------------
// Session lifecycle
// ---------------------------------------------------------------------------

// Verify the stored token and enter the room, or fall back to the login form.
async function startSession(token) {
  state.token = token;
  showLoading();
  const env = await api('/user/checkAuth', { authToken: token });
  if (env.code !== CODE_OK || !env.data) {
    // Only an explicit rejection invalidates the token; a network failure
    // keeps it so a reload can retry.
    if (!env.network) {
      clearToken();
    }
    showLogin(failureText(env, 'Authentication failed'));
    return;
  }
  state.me = { userId: Number(env.data.userId), userName: String(env.data.userName ?? '') };
  resetRoomView();
  showChat();
  connect();
}

function clearToken() {
  state.token = null;
  state.me = null;
  localStorage.removeItem(TOKEN_KEY);
}

// Local teardown shared by Logout and by token invalidation.
function endSession(errorText = '') {
  disconnect();
  clearToken();
  resetRoomView();
  showLogin(errorText);
}

async function logout() {
  const token = state.token;
  // Tear down locally first so the UI reacts immediately; the server call is
  // best effort (the token is discarded either way).
  endSession();
  if (token) await api('/user/logout', { authToken: token });
}

// ---------------------------------------------------------------------------
// Login / register
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
}

// ---------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------

function connect() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  if (!state.token) return;

  setConnState('connecting');
  let ws;
  try {
    ws = new WebSocket(state.wsUrl);
  } catch (_) {
    // A malformed URL throws synchronously; treat it like a failed connection.
    setConnState('disconnected');
    scheduleReconnect();
    return;
  }
  state.ws = ws;
  ws.onopen = () => onSocketOpen(ws);
  ws.onmessage = (ev) => { if (ws === state.ws) handleFrame(ev.data); };
  ws.onclose = () => onSocketClose(ws);
  // Errors are always followed by close, which drives the reconnect.
  ws.onerror = () => {};
}

function onSocketOpen(ws) {
  if (ws !== state.ws) return;
  state.reconnectAttempt = 0;
  setConnState('connected');
  ws.send(JSON.stringify({ authToken: state.token, roomId: ROOM_ID }));
  // The join has no reply; ask for the member list explicitly.
  requestRoomInfo();
}

function onSocketClose(ws) {
  if (ws !== state.ws) return; // stale socket (replaced or logged out)
  state.ws = null;
  setConnState('disconnected');
  scheduleReconnect();
}

function scheduleReconnect() {
  if (!state.token || state.reconnectTimer) return;
  const delay = Math.min(BACKOFF_START_MS * 2 ** state.reconnectAttempt, BACKOFF_MAX_MS);
  state.reconnectAttempt += 1;
  state.reconnectTimer = setTimeout(connect, delay);
}

// Close on purpose: detach first so onclose does not schedule a reconnect.
function disconnect() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  state.reconnectAttempt = 0;
  const ws = state.ws;
  state.ws = null;
  if (ws) {
    try { ws.close(); } catch (_) { /* already closed */ }
  }
  setConnState('disconnected');
}

async function requestRoomInfo() {
  const token = state.token;
  const env = await api('/push/getRoomInfo', { authToken: token, roomId: ROOM_ID });
  // code 1 ("rpc get room info fail!") just means the room is empty; ignore it.
  handleSessionError(env, token);
}

// ---------------------------------------------------------------------------
// Incoming frames
// ---------------------------------------------------------------------------

function parseFrame(data) {
  if (typeof data !== 'string' || data.trim() === '') return null;
  try {
    const frame = JSON.parse(data);
    return frame && typeof frame === 'object' ? frame : null;
  } catch (_) {
    return null;
  }
}

function handleFrame(data) {
  const frame = parseFrame(data);
  if (!frame) return;
  try {
    switch (frame.op) {
      case 2: renderMessage(frame, true); break;
      case 3: renderMessage(frame, false); break;
      case 4: setOnlineCount(frame.count); break;
      case 5: applyRoomInfo(frame); break;
      default: break; // unknown ops are ignored by design
    }
  } catch (err) {
    // A malformed frame must never break the socket handler.
    console.warn('bad frame', err);
  }
}

function setOnlineCount(count) {
  const n = Number(count);
  $('online-count').textContent = String(Number.isFinite(n) ? n : 0);
}

function applyRoomInfo(frame) {
  setOnlineCount(frame.count);
  const info = frame.roomUserInfo && typeof frame.roomUserInfo === 'object' ? frame.roomUserInfo : {};
  const entries = Object.entries(info)
    .map(([id, name]) => [id, String(name ?? '')])
    .sort((a, b) => a[1].localeCompare(b[1]));
  const items = entries.map(([id, name]) => {
    const li = document.createElement('li');
    li.dataset.userId = id;
    li.textContent = name;
    if (state.me && Number(id) === state.me.userId) {
      li.classList.add('me');
      li.title = 'you';
    }
    return li;
  });
  $('members').replaceChildren(...items);
}

function isNearBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 60;
}

function currentTimeString() {
  const d = new Date();
  const pad = (n) => String(n).padStart(2, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function renderMessage(frame, isPrivate) {
  const list = $('messages');
  const stick = isNearBottom(list);
  const own = state.me !== null && Number(frame.fromUserId) === state.me.userId;
  const fromName = String(frame.fromUserName ?? '') || `user ${frame.fromUserId ?? '?'}`;

  const item = document.createElement('div');
  item.className = 'msg';
  if (own) item.classList.add('own');
  if (isPrivate) item.classList.add('private');
  item.dataset.fromUserId = String(frame.fromUserId ?? '');

  const meta = document.createElement('div');
  meta.className = 'msg-meta';
  const from = document.createElement('span');
  from.className = 'msg-from';
  from.textContent = isPrivate ? `private from ${fromName}` : fromName;
  const time = document.createElement('time');
  time.className = 'msg-time';
  // Private messages carry no createTime; show local receive time instead.
  time.textContent = String(frame.createTime ?? '') || currentTimeString();
  meta.append(from, time);

  const text = document.createElement('div');
  text.className = 'msg-text';
  text.textContent = String(frame.msg ?? '');

  item.append(meta, text);
  list.append(item);
  // Follow new messages unless the user scrolled up to read history.
  if (stick || own) list.scrollTop = list.scrollHeight;
}

// ---------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------

async function sendMessage() {
  if (state.sendBusy || !state.token) return;
  const input = $('msg-input');
  const msg = input.value.trim();
  if (!msg) return;
  state.sendBusy = true;
  $('send-btn').disabled = true;
  $('send-error').textContent = '';
  const token = state.token;
  const env = await api('/push/pushRoom', { authToken: token, msg, roomId: ROOM_ID });
  state.sendBusy = false;
  $('send-btn').disabled = false;
  if (handleSessionError(env, token)) return;
  if (env.code !== CODE_OK) {
    // Keep the text so the user can retry.
    $('send-error').textContent = failureText(env, 'Send failed');
    return;
  }
  // Not rendered locally: it shows up when the op-3 frame comes back.
  input.value = '';
  input.focus();
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
  $('send-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sendMessage();
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
