// keygate web console. Plain JavaScript, no build step, no dependencies.
// It talks to the admin API mounted next to it (the mount is this page's
// path without "/ui/…"), sending the signed-in admin key in the apikey
// header. The key lives in sessionStorage only: it is gone when the tab
// closes or the user signs out.
'use strict';

(() => {
  const base = location.pathname.replace(/\/ui(\/.*)?$/, '');
  const STORE = 'keygate.console.key';
  const PAGE = 100;

  // ---------- small helpers ----------

  const $ = (id) => document.getElementById(id);

  /** el builds an element: el('a', {href: '#'}, 'text', child…). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const svgNS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.setAttribute('class', v);
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, String(v));
    }
    for (const c of children) e.append(c);
    return e;
  }

  function show(node, on) { node.hidden = !on; }

  function fmtTime(iso) {
    if (!iso) return '';
    return iso.replace('T', ' ').replace(/(:\d\d)(\.\d+)?Z$/, '$1').slice(0, 16) + ' UTC';
  }

  function relTime(iso) {
    if (!iso) return '';
    const s = (Date.now() - Date.parse(iso)) / 1000;
    const fut = s < 0;
    const a = Math.abs(s);
    let t;
    if (a < 60) t = 'seconds';
    else if (a < 3600) t = Math.round(a / 60) + ' min';
    else if (a < 86400) t = Math.round(a / 3600) + ' h';
    else t = Math.round(a / 86400) + ' days';
    return fut ? 'in ' + t : t + ' ago';
  }

  function badge(status) {
    return el('span', {class: 'badge badge-' + status}, status);
  }

  let flashAt = 0;
  function flash(msg, kind) {
    flashAt = Date.now();
    const f = $('flash');
    f.textContent = msg;
    f.className = 'flash' + (kind ? ' flash-' + kind : '');
    show(f, !!msg);
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // ---------- API ----------

  async function api(method, path, body) {
    const key = sessionStorage.getItem(STORE);
    const headers = {Accept: 'application/json'};
    if (key) headers.apikey = key;
    const init = {method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error'};
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(base + path, init);
    } catch (e) {
      throw new ApiError(0, 'network',
        'The keygate server could not be reached. Check your network and that keygate is running, then try again.');
    }
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!resp.ok) {
      const err = (data && data.error) || {};
      const e = new ApiError(resp.status, err.code || 'http_' + resp.status,
        err.message || `The server answered ${resp.status} ${resp.statusText}.`);
      if (resp.status === 401 && me) {
        // The key stopped working (revoked, expired, rotated): sign out.
        signOut('Your admin key is no longer accepted (it may have been revoked, rotated or expired). Sign in with a valid key.');
      }
      throw e;
    }
    return data;
  }

  const enc = encodeURIComponent;

  // ---------- session ----------

  /** me describes the signed-in key, from GET /whoami: {id, name, user, rights, admin, self}. */
  let me = null;
  /**
   * areas are the configured areas from GET /areas ({name, paths, level,
   * graphql_fields}), or null if they could not be loaded; then the form
   * falls back to the areas seen on keys plus those typed in.
   */
  let areas = null;
  let extraAreas = [];
  let seenAreas = new Set();

  async function signIn(key) {
    sessionStorage.setItem(STORE, key);
    try {
      const w = await api('GET', '/whoami');
      me = {
        id: w.id,
        name: w.name,
        user: w.user,
        rights: w.rights,
        admin: w.rights.includes('keys:admin'),
        self: w.rights.includes('keys:self'),
      };
    } catch (e) {
      sessionStorage.removeItem(STORE);
      me = null;
      throw e;
    }
    await loadAreas();
    renderWho();
  }

  /** loadAreas fetches the configured areas; on failure the form lets area names be typed. */
  async function loadAreas() {
    try {
      const r = await api('GET', '/areas');
      areas = r.areas;
    } catch (e) {
      areas = null;
    }
  }

  /** areaNames are the area names the form can offer. */
  function areaNames() {
    if (areas) return areas.map((a) => a.name);
    return [...new Set([...seenAreas, ...extraAreas])];
  }

  function signOut(msg) {
    sessionStorage.removeItem(STORE);
    me = null;
    areas = null;
    extraAreas = [];
    seenAreas = new Set();
    $('keys-body').replaceChildren();
    $('detail-facts').replaceChildren();
    $('audit-body').replaceChildren();
    $('usage').replaceChildren();
    for (const id of ['report-body', 'report-total', 'area-chart', 'status-chart']) $(id).replaceChildren();
    $('new-form').reset();
    show($('license'), false);
    renderWho();
    flash(msg || 'Signed out. The key was removed from this tab.', msg ? 'error' : '');
    if (location.hash !== '#/signin') location.hash = '#/signin';
    else route();
  }

  function renderWho() {
    show($('who'), !!me);
    show($('nav-new'), !!me);
    show($('nav-usage'), !!me);
    if (!me) return;
    const role = me.admin ? 'keys:admin' : 'keys:self';
    $('who-text').textContent = `${me.name} (${me.user}) · ${role}`;
    show($('revoke-user-open'), me.admin);
  }

  // ---------- routing ----------

  const views = ['signin', 'keys', 'new', 'detail', 'user', 'usage'];

  function showView(name, title) {
    for (const v of views) show($('view-' + v), v === name);
    document.title = (title ? title + ' · ' : '') + 'keygate console';
    for (const a of document.querySelectorAll('nav a')) a.removeAttribute('aria-current');
    const nav = name === 'keys' || name === 'detail' ? 'nav-keys' : name === 'new' ? 'nav-new' : name === 'usage' ? 'nav-usage' : null;
    if (nav) $(nav).setAttribute('aria-current', 'page');
  }

  let lastRoute = '';

  async function route() {
    const h = location.hash || '#/keys';
    if (!me) {
      showView('signin', 'Sign in');
      if (h !== '#/signin') lastRoute = h;
      $('signin-key').focus();
      return;
    }
    if (h === '#/signin') { location.hash = '#/keys'; return; }
    let focusMain = lastShown !== h;
    lastShown = h;
    let m;
    if (h === '#/new') {
      showView('new', 'New key');
      prepareForm();
      focusMain = false;
    } else if ((m = /^#\/keys\/([^/]+)$/.exec(h))) {
      showView('detail', 'Key');
      await loadDetail(decodeURIComponent(m[1]));
    } else if (h === '#/usage') {
      showView('usage', 'Usage');
      await loadReport();
    } else if ((m = /^#\/users\/([^/]+)$/.exec(h))) {
      showView('user', 'User');
      await loadUser(decodeURIComponent(m[1]));
    } else {
      showView('keys', 'Keys');
      await loadKeys(false);
    }
    if (focusMain) $('main').focus({preventScroll: true});
  }
  let lastShown = '';

  // ---------- sign in ----------

  $('signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = $('signin-key');
    const key = input.value.trim();
    const err = $('signin-error');
    show(err, false);
    input.removeAttribute('aria-invalid');
    if (!key) {
      err.textContent = 'Enter an admin API key.';
      show(err, true);
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    $('signin-submit').disabled = true;
    try {
      await signIn(key);
      input.value = '';
      flash('');
      const to = lastRoute && lastRoute !== '#/signin' ? lastRoute : '#/keys';
      if (location.hash === to) route(); else location.hash = to;
    } catch (e) {
      let msg = e.message;
      if (e.status === 401) msg = 'This key was not accepted: it is unknown, revoked, expired or mistyped. Check it and try again.';
      else if (e.status === 403) msg = e.message + ' Sign in with a key that holds keys:admin or keys:self.';
      err.textContent = msg;
      show(err, true);
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    } finally {
      $('signin-submit').disabled = false;
    }
  });

  $('signout').addEventListener('click', () => signOut());

  // ---------- key list ----------

  let listCursor = null;

  function filterQuery() {
    const p = new URLSearchParams();
    for (const f of ['name', 'user', 'status']) {
      const v = $('f-' + f).value.trim();
      if (v) p.set(f, v);
    }
    return p;
  }

  async function loadLicense() {
    try {
      const l = await api('GET', '/license');
      const text = l.limit === null || l.limit === undefined
        ? `${l.in_use} in use, no limit`
        : `${l.in_use} of ${l.limit} in use`;
      $('license-text').textContent = 'Licence: ' + text;
      const meter = $('license-meter');
      show(meter, l.limit !== null && l.limit !== undefined);
      if (l.limit) {
        const pct = Math.min(100, Math.round((100 * l.in_use) / l.limit));
        meter.setAttribute('aria-valuemin', '0');
        meter.setAttribute('aria-valuemax', String(l.limit));
        meter.setAttribute('aria-valuenow', String(l.in_use));
        $('license-fill').style.width = pct + '%';
        $('license').classList.toggle('license-full', l.in_use >= l.limit);
        $('license').classList.toggle('license-high', pct >= 90);
      }
      show($('license'), true);
    } catch (e) {
      if (e.status !== 401) {
        $('license-text').textContent = 'Licence: unknown (' + e.message + ')';
        show($('license-meter'), false);
        show($('license'), true);
      }
    }
  }

  async function loadKeys(more) {
    const body = $('keys-body');
    const q = filterQuery();
    q.set('limit', String(PAGE));
    if (more && listCursor) q.set('cursor', listCursor);
    if (!more) loadLicense();
    show($('keys-error'), false);
    let r;
    try {
      r = await api('GET', '/keys?' + q.toString());
    } catch (e) {
      if (e.status === 401) return;
      const p = $('keys-error');
      p.replaceChildren(
        el('p', {}, el('strong', {}, 'The keys could not be loaded. '), e.message),
        el('p', {}, e.status === 400 ? 'Check the filters and try again.' :
          e.status === 403 ? 'Your key may not list these keys; keys:self lists only keys of its own user.' :
            'Try again; if it keeps failing, check that keygate and its key store are running.'),
        el('button', {type: 'button', class: 'secondary', onclick: () => loadKeys(false)}, 'Retry'));
      show(p, true);
      show($('keys-table-wrap'), false);
      show($('keys-empty'), false);
      show($('keys-more'), false);
      return;
    }
    if (!more) body.replaceChildren();
    for (const k of r.keys) {
      for (const right of k.rights) {
        const [area, lvl] = right.split(':');
        if (area !== 'keys' && (lvl === 'read' || lvl === 'write')) seenAreas.add(area);
      }
      body.append(el('tr', {'data-id': k.id, class: 'status-' + k.status},
        el('td', {}, el('a', {href: '#/keys/' + enc(k.id)}, k.name)),
        el('td', {'data-label': 'User'}, k.user),
        el('td', {'data-label': 'Status'}, badge(k.status)),
        el('td', {'data-label': 'Start'}, el('code', {}, k.start + '…')),
        el('td', {'data-label': 'Rights', class: 'rights-cell'}, k.rights.join(', ')),
        el('td', {'data-label': 'Last used', title: k.last_used_at || ''}, k.last_used_at ? relTime(k.last_used_at) : 'never'),
        el('td', {'data-label': 'Expires', title: k.expires_at || ''},
          k.expires_at ? fmtTime(k.expires_at).slice(0, 10) + ' (' + relTime(k.expires_at) + ')' : 'never'),
      ));
    }
    listCursor = r.next;
    show($('keys-more'), !!r.next);
    const empty = body.children.length === 0;
    show($('keys-table-wrap'), !empty);
    const e = $('keys-empty');
    if (empty) {
      const filtered = [...filterQuery().keys()].length > 0;
      e.replaceChildren(filtered
        ? el('p', {}, 'No keys match these filters. Name and user must match exactly; ',
          el('button', {type: 'button', class: 'link', onclick: clearFilters}, 'clear the filters'), ' to see every key.')
        : el('p', {}, 'There are no keys yet. ', el('a', {href: '#/new'}, 'Create the first key'),
          '; integrations then send it in the ', el('code', {}, 'apikey'), ' header.'));
    }
    show(e, empty);
  }

  function clearFilters() {
    $('filters').reset(); // the reset listener reloads
  }

  $('filters').addEventListener('submit', (ev) => { ev.preventDefault(); loadKeys(false); });
  $('filters').addEventListener('reset', () => setTimeout(() => loadKeys(false), 0));
  $('f-status').addEventListener('change', () => loadKeys(false));
  $('keys-more').addEventListener('click', () => loadKeys(true));

  // ---------- create / import ----------

  const fieldOfMessage = [
    [/\ballowed_ips\b/i, 'allowed-ips'],
    [/\benvironment/i, 'environments'],
    [/\bimport|\bapikey\b|imported key/i, 'apikey'],
    [/\bsha-?256\b/i, 'sha256'],
    [/\bright|\barea|keys:/i, 'rights'],
    [/\bexpir/i, 'expires'],
    [/\brate\b|\bper\b/i, 'rate'],
    [/\bquota\b|\bperiod\b/i, 'quota'],
    [/\bdescription\b/i, 'description'],
    [/\bname\b/i, 'name'],
    [/\buser\b/i, 'user'],
  ];

  // splitList reads a comma- or space-separated list; the server checks the
  // entries and names a bad one.
  function splitList(v) {
    return v.split(/[\s,]+/).map((s) => s.trim()).filter((s) => s !== '');
  }

  function clearFieldErrors() {
    for (const p of document.querySelectorAll('#new-form .error')) { p.textContent = ''; show(p, false); }
    for (const i of document.querySelectorAll('#new-form [aria-invalid]')) i.removeAttribute('aria-invalid');
    show($('new-error'), false);
  }

  function fieldError(field, msg) {
    const p = $('n-' + field + '-error');
    if (!p) return null;
    p.textContent = msg;
    show(p, true);
    const input = field === 'rights' ? document.querySelector('#rights-body input') || $('n-area')
      : field === 'expires' ? $('n-expiry') : $('n-' + field);
    if (input && field !== 'rights') input.setAttribute('aria-invalid', 'true');
    return input;
  }

  /** grantable returns {area: maxLevel} the signed-in key may hand out. */
  function grantable() {
    const out = new Map();
    const lv = (l) => (l === 'write' ? 2 : 1);
    const typed = !areas; // areas unknown: let the user type names
    if (me.admin) {
      const names = new Set(areaNames());
      if (typed) {
        for (const r of me.rights) {
          const [a, l] = r.split(':');
          if (a !== 'keys' && l) names.add(a);
        }
      }
      for (const n of [...names].sort()) out.set(n, 2);
      return {areas: out, any: typed};
    }
    let wildcard = 0;
    for (const r of me.rights) {
      const [a, l] = r.split(':');
      if (a === 'keys' || !l) continue;
      if (a === '*') wildcard = lv(l);
      out.set(a, Math.max(out.get(a) || 0, lv(l)));
    }
    if (wildcard) for (const a of areaNames()) out.set(a, Math.max(out.get(a) || 0, wildcard));
    return {areas: new Map([...out].sort()), any: typed && wildcard > 0, wildcard};
  }

  /** areaPaths describes an area's configured paths, for its row's title. */
  function areaPaths(name) {
    const a = areas && areas.find((x) => x.name === name);
    if (!a) return '';
    const parts = [...a.paths];
    if (a.graphql_fields && a.graphql_fields.length) parts.push('GraphQL: ' + a.graphql_fields.join(', '));
    return parts.join(' ') + (a.level === 'write' ? ' (every method needs write)' : '');
  }

  function renderRights() {
    const tb = $('rights-body');
    const keep = new Map();
    for (const i of tb.querySelectorAll('input:checked')) keep.set(i.name.slice(6), i.value);
    tb.replaceChildren();
    const g = grantable();
    let i = 0;
    for (const [area, max] of g.areas) {
      i++;
      const name = 'right:' + area;
      const label = area === '*' ? 'All areas (*)' : area;
      const cur = keep.get(area) || 'none';
      const cell = (value, text) => el('td', {},
        el('input', {type: 'radio', name, value, checked: cur === value, 'aria-label': `${label}: ${text}`}));
      const paths = areaPaths(area);
      tb.append(el('tr', {},
        el('th', {scope: 'row', title: paths}, label, paths ? el('span', {class: 'area-paths'}, paths) : ''),
        cell('none', 'none'),
        cell('read', 'read'),
        max >= 2 ? cell('write', 'write') : el('td', {class: 'muted'}, '—')));
    }
    if (i === 0) {
      tb.append(el('tr', {}, el('td', {colspan: 4, class: 'muted'},
        !me.admin ? 'Your key holds no area rights it could grant.'
          : areas ? 'The server has no areas configured: add area lines to the apikey app.'
            : 'No areas known yet: type an area name below and add it.')));
    }
    show($('add-area'), g.any);
    const help = $('rights-help');
    if (!me.admin) {
      help.textContent = 'Your key holds keys:self: you can grant only rights your own key holds (' +
        me.rights.join(', ') + ').';
    } else if (areas) {
      help.textContent = 'The areas configured on the server. Read allows GET, HEAD and OPTIONS; write allows every method.';
    } else {
      help.textContent = 'The configured areas could not be loaded; these are the areas the listed keys use. Add any other area configured on the server.';
    }
    const adm = $('admin-rights');
    adm.replaceChildren();
    const opts = [];
    if (me.admin) opts.push(['keys:admin', 'keys:admin — manage every key']);
    if (me.admin || me.self) opts.push(['keys:self', 'keys:self — manage keys of its own user']);
    for (const [v, text] of opts) {
      adm.append(el('label', {class: 'inline'}, el('input', {type: 'checkbox', name: 'adminright', value: v}), ' ' + text));
    }
  }

  function prepareForm() {
    clearFieldErrors();
    renderRights();
    const user = $('n-user');
    if (!me.admin) {
      user.value = me.user;
      user.readOnly = true;
      $('n-user-help').textContent = 'keys:self creates keys for its own user only.';
    } else {
      user.readOnly = false;
    }
    updateMode();
    $('n-name').focus();
  }

  function updateMode() {
    const imp = document.querySelector('input[name=mode]:checked').value === 'import';
    show($('import-fields'), imp);
    $('new-submit').textContent = imp ? 'Import key' : 'Create key';
    $('new-title').textContent = imp ? 'Import a key' : 'New key';
  }
  for (const r of document.querySelectorAll('input[name=mode]')) r.addEventListener('change', updateMode);

  $('n-expiry').addEventListener('change', () => {
    const d = $('n-expiry').value === 'date';
    show($('n-expires-date-field'), d);
    if (d) $('n-expires-date').focus();
  });

  function addArea() {
    const inp = $('n-area');
    const v = inp.value.trim();
    if (!v) return;
    if (!/^[A-Za-z0-9_.*-]+$/.test(v) || v === 'keys') {
      fieldError('rights', `"${v}" is not an area name: use letters, digits, "_", "-" or ".".`);
      return;
    }
    if (!extraAreas.includes(v)) extraAreas.push(v);
    inp.value = '';
    renderRights();
    const r = document.querySelector(`#rights-body input[name="right:${CSS.escape(v)}"][value="read"]`);
    if (r) { r.checked = true; r.focus(); }
  }
  $('n-area-add').addEventListener('click', addArea);
  $('n-area').addEventListener('keydown', (ev) => { if (ev.key === 'Enter') { ev.preventDefault(); addArea(); } });

  $('new-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearFieldErrors();
    const imp = document.querySelector('input[name=mode]:checked').value === 'import';
    const body = {
      name: $('n-name').value.trim(),
      description: $('n-description').value.trim(),
      user: $('n-user').value.trim(),
      rights: [],
    };
    for (const i of document.querySelectorAll('#rights-body input:checked')) {
      if (i.value !== 'none') body.rights.push(i.name.slice(6) + ':' + i.value);
    }
    for (const i of document.querySelectorAll('#admin-rights input:checked')) body.rights.push(i.value);
    const exp = $('n-expiry').value;
    if (exp === 'date') {
      const d = $('n-expires-date').value;
      if (d) body.expires_at = d + 'T23:59:59Z';
    } else if (exp) {
      body.expires_in = exp;
    }
    const rate = $('n-rate').value.trim();
    if (rate) body.rate = {limit: Number(rate), per: $('n-rate-per').value};
    const quota = $('n-quota').value.trim();
    if (quota) body.quota = {limit: Number(quota), period: $('n-quota-period').value};
    const ips = splitList($('n-allowed-ips').value);
    if (ips.length) body.allowed_ips = ips;
    const envs = splitList($('n-environments').value);
    if (envs.length) body.environments = envs;
    if (imp) {
      const k = $('n-apikey').value.trim();
      const s = $('n-sha256').value.trim();
      if (k) body.apikey = k;
      if (s) body.sha256 = s;
    }

    // Client-side checks first; the server has the last word.
    let first = null;
    const need = (cond, field, msg) => { if (!cond) { const i = fieldError(field, msg); first = first || i; } };
    if (imp) need(body.apikey || body.sha256, 'apikey', 'Give the existing key value or its SHA-256.');
    need(body.name, 'name', 'Give the key a name, e.g. the integration that uses it.');
    need(body.user, 'user', 'Give the run-as user the key acts as.');
    need(body.rights.length, 'rights', 'Choose at least one right: a key must say what it is for.');
    need(exp !== 'date' || body.expires_at, 'expires', 'Choose the expiry date.');
    need(!rate || (Number.isInteger(Number(rate)) && Number(rate) > 0), 'rate', 'The rate limit must be a whole number above 0.');
    need(!quota || (Number.isInteger(Number(quota)) && Number(quota) > 0), 'quota', 'The quota must be a whole number above 0.');
    if (first) { first.focus(); return; }

    $('new-submit').disabled = true;
    try {
      const k = await api('POST', imp ? '/keys/import' : '/keys', body);
      $('new-form').reset();
      updateMode();
      show($('n-expires-date-field'), false);
      if (imp) {
        flash(`Imported key "${k.name}".`, 'ok');
        location.hash = '#/keys/' + enc(k.id);
      } else {
        showSecret(k, 'created', () => { location.hash = '#/keys/' + enc(k.id); });
      }
    } catch (e) {
      if (e.status === 401) return;
      const panel = $('new-error');
      const hint = e.code === 'license_exhausted'
        ? 'Revoke a key that is no longer needed, or raise the license limit in the server configuration.'
        : e.status === 403 ? 'Your key may not grant this; choose narrower rights.' : 'Correct the form and try again.';
      panel.replaceChildren(el('p', {}, el('strong', {}, e.message)), el('p', {}, hint));
      show(panel, true);
      let input = null;
      for (const [re, field] of fieldOfMessage) {
        if (re.test(e.message)) { input = fieldError(field, e.message); break; }
      }
      (input || panel).focus();
      if (!input) { panel.tabIndex = -1; panel.focus(); }
    } finally {
      $('new-submit').disabled = false;
    }
  });

  // ---------- dialogs ----------

  // openDialog shows d modally and focuses focus; closing d returns the
  // focus to what had it before (or, when d was opened from another dialog
  // that has since closed, to what had it before that one).
  function openDialog(d, focus) {
    let opener = document.activeElement;
    const from = opener && opener.closest ? opener.closest('dialog') : null;
    if (from && from !== d && !from.open) opener = from._opener;
    d._opener = opener;
    d.showModal();
    if (focus) focus.focus();
  }

  function closeDialog(d) {
    d.close();
  }

  for (const d of document.querySelectorAll('dialog')) {
    d.addEventListener('close', () => {
      const o = d._opener;
      if (document.querySelector('dialog[open]')) return; // another dialog took over
      if (o && document.contains(o) && typeof o.focus === 'function') o.focus();
    });
  }

  // Shown-once dialog.
  let secretDone = null;

  function showSecret(k, verb, done) {
    const d = $('secret-dialog');
    $('secret-title').textContent = verb === 'rotated' ? 'The new key for ' + k.name : 'Your new API key';
    $('secret-name').textContent = k.name;
    $('secret-value').value = k.key;
    $('secret-download').textContent = `Download ${fileName(k.name)}`;
    $('secret-download').dataset.name = k.name;
    $('secret-note').textContent = verb === 'rotated'
      ? 'Give it to every integration that used the old key.'
      : `Integrations send it in the apikey header; it acts as ${k.user} with ${k.rights.join(', ')}.`;
    $('secret-status').textContent = '';
    show($('secret-confirm'), false);
    secretDone = done;
    openDialog(d, $('secret-value'));
    $('secret-value').select();
  }

  function fileName(name) {
    return (name.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^\.+/, '') || 'key') + '.apikey';
  }

  $('secret-copy').addEventListener('click', async () => {
    const v = $('secret-value').value;
    let ok = false;
    try {
      await navigator.clipboard.writeText(v);
      ok = true;
    } catch (e) {
      $('secret-value').select();
      try { ok = document.execCommand('copy'); } catch (e2) { ok = false; }
    }
    $('secret-status').textContent = ok ? 'Copied to the clipboard.' : 'Copying failed: select the key and copy it by hand.';
  });

  $('secret-download').addEventListener('click', () => {
    const blob = new Blob([$('secret-value').value + '\n'], {type: 'text/plain'});
    const url = URL.createObjectURL(blob);
    const a = el('a', {href: url, download: fileName($('secret-download').dataset.name || 'key')});
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    $('secret-status').textContent = 'Downloaded ' + a.download + '. Keep the file private.';
  });

  function askCloseSecret() {
    show($('secret-confirm'), true);
    $('secret-confirm-no').focus();
  }
  $('secret-close').addEventListener('click', askCloseSecret);
  $('secret-dialog').addEventListener('cancel', (ev) => { ev.preventDefault(); askCloseSecret(); });
  $('secret-confirm-no').addEventListener('click', () => { show($('secret-confirm'), false); $('secret-close').focus(); });
  $('secret-confirm-yes').addEventListener('click', () => {
    $('secret-value').value = '';
    closeDialog($('secret-dialog'));
  });
  $('secret-dialog').addEventListener('close', () => {
    $('secret-value').value = '';
    const done = secretDone;
    secretDone = null;
    if (done) setTimeout(done, 0);
  });

  // Confirmation dialog: confirm({title, message, ok, fields, onInput, action}).
  // action(values) runs on confirm; its error is shown in the dialog.
  function confirm(opts) {
    return new Promise((resolve) => {
      const d = $('confirm-dialog');
      $('confirm-title').textContent = opts.title;
      const msg = $('confirm-message');
      const setMsg = (m) => { msg.replaceChildren(...(Array.isArray(m) ? m : [m])); };
      setMsg(opts.message);
      const ok = $('confirm-ok');
      ok.textContent = opts.ok;
      ok.disabled = false;
      const err = $('confirm-error');
      show(err, false);
      const fields = $('confirm-fields');
      fields.replaceChildren(...(opts.fields || []));
      const values = () => {
        const v = {};
        for (const i of fields.querySelectorAll('input, select')) v[i.name] = i.value.trim();
        return v;
      };
      if (opts.onInput) {
        fields.oninput = () => setMsg(opts.onInput(values()));
        fields.onchange = fields.oninput;
      } else {
        fields.oninput = fields.onchange = null;
      }
      let settled = false;
      const finish = (r) => {
        if (settled) return;
        settled = true;
        form.onsubmit = null;
        cancel.onclick = null;
        d.onclose = null;
        if (d.open) d.close();
        resolve(r);
      };
      const form = $('confirm-form');
      const cancel = $('confirm-cancel');
      form.onsubmit = async (ev) => {
        ev.preventDefault();
        show(err, false);
        ok.disabled = true;
        try {
          const r = await opts.action(values());
          finish(r === undefined ? true : r);
        } catch (e) {
          if (e.status === 401) { finish(null); return; }
          err.textContent = e.message;
          show(err, true);
          ok.disabled = false;
        }
      };
      cancel.onclick = () => finish(null);
      d.onclose = () => finish(null);
      const first = fields.querySelector('input, select');
      openDialog(d, first || cancel);
    });
  }

  // ---------- key detail ----------

  let current = null;

  async function loadDetail(id) {
    show($('detail-error'), false);
    show($('detail-body'), false);
    let k;
    try {
      k = await api('GET', '/keys/' + enc(id));
    } catch (e) {
      if (e.status === 401) return;
      const p = $('detail-error');
      p.replaceChildren(el('p', {}, el('strong', {}, 'This key could not be loaded. '), e.message),
        el('p', {}, e.status === 404 ? 'It may not exist, or not be yours. ' : 'Try again later. ',
          el('a', {href: '#/keys'}, 'Back to the key list')));
      show(p, true);
      return;
    }
    current = k;
    document.title = k.name + ' · keygate console';
    $('detail-title').replaceChildren(k.name + ' ', badge(k.status));
    $('detail-rotate').disabled = k.status === 'revoked';
    $('detail-revoke').disabled = k.status === 'revoked';
    show($('detail-policy'), !!me.admin);
    $('detail-policy').disabled = k.status === 'revoked';
    const facts = [
      ['ID', el('code', {}, k.id)],
      ['Run-as user', el('a', {href: '#/users/' + enc(k.user), id: 'detail-user-link'}, k.user)],
      ['Status', badge(k.status)],
      ['Start', el('code', {}, k.start + '…')],
      ['Rights', el('ul', {class: 'chips'}, k.rights.map((r) => el('li', {}, r)))],
      ['Description', k.description || '—'],
      ['Rate limit', k.rate ? `${k.rate.limit} requests per ${k.rate.per}` : 'none'],
      ['Quota', k.quota ? `${k.quota.limit} requests per ${k.quota.period}` : 'none'],
      ['Allowed addresses', k.allowed_ips && k.allowed_ips.length ? k.allowed_ips.join(', ') : 'anywhere'],
      ['Environments', k.environments && k.environments.length ? k.environments.join(', ') : 'none (only handlers without an environment)'],
      ['Expires', k.expires_at ? fmtTime(k.expires_at) + ' (' + relTime(k.expires_at) + ')' : 'never'],
      ['Last used', k.last_used_at ? fmtTime(k.last_used_at) : 'never'],
      ['Created', fmtTime(k.created_at) + ' by ' + k.created_by],
      ['Imported', k.imported ? 'yes' : 'no'],
    ];
    if (k.revoked_at) facts.push(['Revoked', fmtTime(k.revoked_at)]);
    $('detail-facts').replaceChildren(...facts.flatMap(([t, d]) => [el('dt', {}, t), el('dd', {}, d)]));
    show($('detail-body'), true);
    const userBtn = $('detail-revoke-user');
    if (userBtn) userBtn.remove();
    if (me.admin) {
      $('detail-revoke').after(el('button', {type: 'button', class: 'secondary danger-outline', id: 'detail-revoke-user',
        onclick: () => revokeUser(k.user)}, `Revoke all keys of ${k.user}…`));
    }
    loadUsage(k.id);
    loadAudit(k.id);
  }

  /**
   * barChart draws a horizontal bar chart, one labelled row per part, in
   * the order given: parts are [name, count] pairs. Each bar is a
   * rect.<barClass> with data-<dataKey>="name" and data-count, its count is
   * written after it (as "n · p%" when opts.share is set: the total to take
   * shares of), and the svg's accessible name (role img) carries every
   * number. opts: label (what the chart shows), barClass, dataKey, width
   * (in px, so the text is not scaled much), names (a display name per part,
   * optional), classOf (an extra class per part, optional).
   */
  function barChart(parts, opts) {
    const W = opts.width, rowH = 26, charW = 7;
    const shown = (name) => (opts.names && opts.names[name]) || name;
    // The label column fits the longest name, up to 40 % of the width;
    // longer names are cut (the tooltip has them whole).
    const longest = Math.max(...parts.map(([name]) => shown(name).length));
    const labelW = Math.min(Math.round(W * 0.4), 16 + charW * longest), countW = opts.share ? 96 : 60;
    const barW = W - labelW - countW;
    const max = Math.max(1, ...parts.map(([, n]) => n));
    const pct = (n) => opts.share ? Math.round((n / opts.share) * 100) + '%' : '';
    const countText = (n) => opts.share ? `${n} · ${pct(n)}` : String(n);
    const fit = Math.max(4, Math.floor((labelW - 12) / charW));
    const summary = parts.map(([name, n]) => `${shown(name)} ${n}${opts.share ? ' (' + pct(n) + ')' : ''}`).join(', ');
    const chart = svg('svg', {viewBox: `0 0 ${W} ${parts.length * rowH}`, class: 'chart bars', role: 'img',
      'aria-label': `${opts.label}: ${summary}.`});
    parts.forEach(([name, n], i) => {
      const y = i * rowH, w = n ? Math.max(2, (n / max) * barW) : 0;
      const tip = `${shown(name)}: ${n} request${n === 1 ? '' : 's'}${opts.share ? ' (' + pct(n) + ')' : ''}`;
      const label = shown(name).length > fit ? shown(name).slice(0, fit - 1) + '…' : shown(name);
      const extra = opts.classOf ? ' ' + opts.classOf(name) : '';
      const data = 'data-' + opts.dataKey;
      chart.append(svg('text', {x: labelW - 8, y: y + rowH / 2, class: 'bar-label', text: label}));
      chart.append(svg('rect', {x: labelW, y: y + 4, width: w, height: rowH - 8, class: opts.barClass + extra,
        [data]: name, 'data-count': n}, svg('title', {text: tip})));
      chart.append(svg('text', {x: labelW + w + 6, y: y + rowH / 2, class: 'bar-count', [data]: name, text: countText(n)}));
      // A full-row hit area, so a short bar or a cut name has a tooltip too.
      chart.append(svg('rect', {x: 0, y, width: W, height: rowH, class: 'hit'}, svg('title', {text: tip})));
    });
    return chart;
  }

  /** chartWidth is the width, in px, to draw a chart in box at: its content's. */
  function chartWidth(box) {
    const cs = getComputedStyle(box);
    const w = box.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    return Math.round(Math.max(280, w || 560));
  }

  /** byCount sorts the parts of a "by" object by count (most first), then name. */
  const byCount = (by) => Object.entries(by || {}).filter(([, n]) => n > 0)
    .sort(([a, m], [b, n]) => n - m || (a < b ? -1 : a > b ? 1 : 0));

  async function loadUsage(id) {
    const box = $('usage');
    box.replaceChildren(el('p', {class: 'muted'}, 'Loading usage…'));
    const to = new Date();
    const from = new Date(to.getTime() - 29 * 86400000);
    const day = (d) => d.toISOString().slice(0, 10);
    let r;
    try {
      r = await api('GET', `/keys/${enc(id)}/usage?from=${day(from)}&to=${day(to)}&by=area`);
    } catch (e) {
      box.replaceChildren(el('p', {class: 'error'}, 'Usage could not be loaded: ' + e.message));
      return;
    }
    const counts = new Map(r.days.map((d) => [d.date, d.requests]));
    const days = [];
    for (let i = 0; i < 30; i++) {
      const d = day(new Date(from.getTime() + i * 86400000));
      days.push([d, counts.get(d) || 0]);
    }
    const total = days.reduce((s, [, n]) => s + n, 0);
    const max = Math.max(1, ...days.map(([, n]) => n));
    const W = 600, H = 160, pad = 24, bw = (W - pad) / 30;
    const chart = svg('svg', {viewBox: `0 0 ${W} ${H + 20}`, class: 'chart', role: 'img',
      'aria-label': `Requests per day from ${days[0][0]} to ${days[29][0]}: ${total} in total, at most ${max === 1 && total === 0 ? 0 : max} on one day.`});
    chart.append(svg('line', {x1: pad, y1: H, x2: W, y2: H, class: 'axis'}));
    chart.append(svg('text', {x: 0, y: 10, class: 'tick'}, document.createTextNode(String(total ? max : 0))));
    chart.append(svg('text', {x: 0, y: H, class: 'tick'}, document.createTextNode('0')));
    days.forEach(([d, n], i) => {
      const h = n ? Math.max(2, (n / max) * (H - 10)) : 0;
      const bar = svg('rect', {x: pad + i * bw + 1, y: H - h, width: Math.max(1, bw - 2), height: h, class: 'bar'});
      bar.append(svg('title', {text: `${d}: ${n} requests`}));
      chart.append(bar);
      // A full-height hit area so empty days have a tooltip too.
      const hit = svg('rect', {x: pad + i * bw, y: 0, width: bw, height: H, class: 'hit'});
      hit.append(svg('title', {text: `${d}: ${n} requests`}));
      chart.append(hit);
    });
    chart.append(svg('text', {x: pad, y: H + 16, class: 'tick'}, document.createTextNode(days[0][0])));
    chart.append(svg('text', {x: W, y: H + 16, class: 'tick end'}, document.createTextNode(days[29][0])));
    box.replaceChildren(el('p', {class: 'usage-total', id: 'usage-total'}, `${total} request${total === 1 ? "" : "s"} in the last 30 days`), chart);
    // The same 30 days by area, when any request was counted in one.
    const byArea = {};
    for (const d of r.days) for (const [name, n] of Object.entries(d.by || {})) byArea[name] = (byArea[name] || 0) + n;
    const parts = byCount(byArea);
    if (parts.length) {
      box.append(el('div', {id: 'key-area-chart', class: 'usage-split'},
        el('h3', {}, 'By area'),
        barChart(parts, {label: `Requests per area from ${days[0][0]} to ${days[29][0]}`, barClass: 'area-bar', dataKey: 'area', width: chartWidth(box)}),
        el('p', {class: 'help'}, 'A GraphQL request that touches several areas counts in each.')));
    }
  }

  // auditDetails renders an audit event's details for people: rights as a
  // list, rates and quotas as "100 per 1m", times like the rest of the page,
  // flags by their name; anything unforeseen as compact JSON.
  function auditDetails(details) {
    const label = (k) => k.replace(/_/g, ' ');
    const value = (k, v) => {
      if (v === null || v === undefined) return k === 'expires_at' ? 'never' : 'none';
      if (Array.isArray(v)) return v.length ? v.join(', ') : 'none';
      if (typeof v === 'object' && 'limit' in v && ('per' in v || 'period' in v)) return `${v.limit} per ${v.per || v.period}`;
      if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v)) return fmtTime(v);
      if (typeof v === 'object') return JSON.stringify(v);
      return String(v);
    };
    return Object.entries(details || {}).map(([k, v]) => v === true ? label(k) : `${label(k)}: ${value(k, v)}`).join(' · ');
  }

  async function loadAudit(id) {
    const body = $('audit-body');
    body.replaceChildren();
    let r;
    try {
      r = await api('GET', '/audit?key=' + enc(id) + '&limit=100');
    } catch (e) {
      body.append(el('tr', {}, el('td', {colspan: 4, class: 'error'}, 'The audit trail could not be loaded: ' + e.message)));
      return;
    }
    for (const ev of r.events) {
      const details = auditDetails(ev.details);
      body.append(el('tr', {}, el('td', {}, fmtTime(ev.at).replace(' UTC', '')), el('td', {}, el('code', {}, ev.actor)),
        el('td', {}, ev.action), el('td', {}, details)));
    }
    show($('audit-empty'), r.events.length === 0);
  }

  // ---------- licence report ----------

  function reportQuery(format, by) {
    const q = new URLSearchParams();
    if ($('r-from').value) q.set('from', $('r-from').value);
    if ($('r-to').value) q.set('to', $('r-to').value);
    if ($('r-user').value.trim()) q.set('user', $('r-user').value.trim());
    if (format) q.set('format', format);
    if (by) q.set('by', by);
    return q.toString();
  }

  /**
   * reportRange describes the report's range and user for the charts'
   * names, with the server's defaults (to: today UTC; from: 29 days before
   * to).
   */
  function reportRange() {
    const day = (d) => d.toISOString().slice(0, 10);
    const to = $('r-to').value || day(new Date());
    const from = $('r-from').value || day(new Date(Date.parse(to + 'T00:00:00Z') - 29 * 86400000));
    const user = $('r-user').value.trim();
    return `from ${from} to ${to}` + (user ? ` for user ${user}` : '');
  }

  const statusClasses = ['1xx', '2xx', '3xx', '4xx', '5xx', 'other'];
  const statusNames = {'1xx': '1xx informational', '2xx': '2xx success', '3xx': '3xx redirection',
    '4xx': '4xx client error', '5xx': '5xx server error', other: 'other'};

  function renderAreaChart(box, r, range) {
    const parts = byCount(r.by);
    if (!parts.length) {
      box.replaceChildren(el('p', {class: 'empty', id: 'area-empty'}, r.total
        ? 'None of these requests was counted in an area.' : 'No requests in this range.'));
      return;
    }
    box.replaceChildren(barChart(parts, {label: `Requests per area ${range}`, barClass: 'area-bar', dataKey: 'area', width: chartWidth(box)}),
      el('p', {class: 'help'}, 'A GraphQL request that touches several areas counts in each, so the areas need not add up to the requests.'));
  }

  function renderStatusChart(box, r, range) {
    const by = r.by || {};
    const answered = Object.values(by).reduce((s, n) => s + n, 0);
    if (!answered) {
      box.replaceChildren(el('p', {class: 'empty', id: 'status-empty'}, r.total
        ? 'No answer classes were counted for these requests.' : 'No requests in this range.'));
      return;
    }
    // 2xx to 5xx always, 1xx and other when there are any, in class order.
    const names = [...statusClasses, ...Object.keys(by).filter((c) => !statusClasses.includes(c)).sort()];
    const parts = names.map((c) => [c, by[c] || 0]).filter(([c, n]) => n > 0 || /^[2-5]xx$/.test(c));
    box.replaceChildren(barChart(parts, {label: `Answers by class ${range}`, barClass: 'status-bar', dataKey: 'class',
      width: chartWidth(box), share: answered, names: statusNames, classOf: (c) => 'status-' + c}));
  }

  let reportSeq = 0;

  async function loadReport() {
    show($('report-error'), false);
    const seq = ++reportSeq;
    const areaBox = $('area-chart'), statusBox = $('status-chart');
    for (const b of [areaBox, statusBox]) b.replaceChildren(el('p', {class: 'muted'}, 'Loading…'));
    // The rows and the areas in one call, the answer classes in another.
    const byStatus = api('GET', '/usage?' + reportQuery('', 'status')).catch((e) => e);
    let r;
    try {
      r = await api('GET', '/usage?' + reportQuery('', 'area'));
    } catch (e) {
      if (seq !== reportSeq) return;
      areaBox.replaceChildren();
      statusBox.replaceChildren();
      if (e.status === 401) return;
      $('report-error').textContent = e.message;
      show($('report-error'), true);
      return;
    }
    if (seq !== reportSeq) return;
    const range = reportRange();
    const rows = [...r.keys].sort((a, b) => b.requests - a.requests);
    const top = Math.max(1, ...rows.map((k) => k.requests));
    $('report-body').replaceChildren(...rows.map((k) => el('tr', {'data-id': k.id},
      el('td', {}, el('a', {href: '#/keys/' + enc(k.id)}, k.name)),
      el('td', {}, el('a', {href: '#/users/' + enc(k.user)}, k.user)),
      el('td', {class: 'num'}, String(k.requests)),
      el('td', {}, el('span', {class: 'bar-cell', style: null, title: `${k.requests} of ${r.total}`},
        el('meter', {min: '0', max: String(top), value: String(k.requests)}))))));
    $('report-total').textContent = `${r.total} requests by ${rows.length} key${rows.length === 1 ? '' : 's'}.`;
    renderAreaChart(areaBox, r, range);
    const s = await byStatus;
    if (seq !== reportSeq) return;
    if (s instanceof Error) {
      statusBox.replaceChildren(el('p', {class: 'error'}, 'The answer classes could not be loaded: ' + s.message));
      return;
    }
    renderStatusChart(statusBox, s, range);
  }

  $('report-form').addEventListener('submit', (ev) => { ev.preventDefault(); loadReport(); });
  $('r-csv').addEventListener('click', async () => {
    show($('report-error'), false);
    try {
      const key = sessionStorage.getItem(STORE);
      const res = await fetch(base + '/usage?' + reportQuery('csv'), {headers: {apikey: key}, cache: 'no-store', credentials: 'omit', redirect: 'error'});
      if (!res.ok) throw new Error((await res.json()).error.message);
      const url = URL.createObjectURL(await res.blob());
      const a = el('a', {href: url, download: 'keygate-usage.csv'});
      document.body.append(a);
      a.click();
      a.remove();
      URL.revokeObjectURL(url);
    } catch (e) {
      $('report-error').textContent = e.message;
      show($('report-error'), true);
    }
  });

  // ---------- run-as user ----------

  let currentUser = null;
  const limitText = (l, unit) => l ? `${l.limit} requests per ${l[unit]}` : 'none';

  async function loadUser(user) {
    show($('user-error'), false);
    show($('user-body'), false);
    let u;
    try {
      u = await api('GET', '/users/' + enc(user));
    } catch (e) {
      if (e.status === 401) return;
      $('user-error').replaceChildren(el('p', {}, el('strong', {}, 'This user could not be loaded. '), e.message));
      show($('user-error'), true);
      return;
    }
    currentUser = u.user;
    document.title = u.user + ' · keygate console';
    $('user-title').textContent = 'Run-as user ' + u.user;
    $('user-facts').replaceChildren(...[
      ['Active keys', String(u.active_keys)],
      ['Shared rate limit', limitText(u.rate, 'per')],
      ['Shared quota', limitText(u.quota, 'period')],
    ].flatMap(([t, d]) => [el('dt', {}, t), el('dd', {}, d)]));
    $('user-keys-link').href = '#/keys?user=' + enc(u.user);
    $('user-keys-link').onclick = (ev) => { ev.preventDefault(); $('f-user').value = u.user; location.hash = '#/keys'; };
    $('u-rate').value = u.rate ? u.rate.limit : '';
    if (u.rate) $('u-rate-per').value = u.rate.per;
    $('u-quota').value = u.quota ? u.quota.limit : '';
    if (u.quota) $('u-quota-period').value = u.quota.period;
    show($('u-error'), false);
    show($('user-limits-form'), !!me.admin);
    show($('user-body'), true);
  }

  $('user-limits-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const err = $('u-error');
    show(err, false);
    const rate = $('u-rate').value.trim();
    const quota = $('u-quota').value.trim();
    const path = '/users/' + enc(currentUser) + '/limits';
    $('u-save').disabled = true;
    try {
      if (!rate && !quota) {
        await api('DELETE', path);
      } else {
        const body = {};
        if (rate) body.rate = {limit: Number(rate), per: $('u-rate-per').value};
        if (quota) body.quota = {limit: Number(quota), period: $('u-quota-period').value};
        await api('PUT', path, body);
      }
      flash(`Saved the shared limits of ${currentUser}.`, 'ok');
      await loadUser(currentUser);
    } catch (e) {
      if (e.status !== 401) {
        err.textContent = e.message;
        show(err, true);
      }
    } finally {
      $('u-save').disabled = false;
    }
  });

  // ---------- rotate, revoke, revoke user ----------

  const graceText = {
    '': 'stops working at once',
    '1h': 'keeps working for 1 hour, then stops',
    '24h': 'keeps working for 24 hours, then stops',
    '168h': 'keeps working for 7 days, then stops',
  };

  $('detail-rotate').addEventListener('click', async () => {
    const k = current;
    const msg = (v) => [el('strong', {}, `The current key of "${k.name}" ${graceText[v.grace || '']}.`),
      ' Every integration using it must be given the new key; it is shown once, next.'];
    const r = await confirm({
      title: `Rotate "${k.name}"?`,
      message: msg({}),
      ok: 'Rotate key',
      fields: [el('div', {class: 'field'},
        el('label', {for: 'rotate-grace'}, 'Keep the old key working for'),
        el('select', {id: 'rotate-grace', name: 'grace'},
          el('option', {value: ''}, 'no time (stop at once)'),
          el('option', {value: '1h'}, '1 hour'),
          el('option', {value: '24h'}, '24 hours'),
          el('option', {value: '168h'}, '7 days')))],
      onInput: msg,
      action: (v) => api('POST', `/keys/${enc(k.id)}/rotate`, v.grace ? {grace: v.grace} : {}),
    });
    if (r) showSecret(r, 'rotated', () => loadDetail(k.id));
  });

  $('detail-policy').addEventListener('click', async () => {
    const k = current;
    const r = await confirm({
      title: `Addresses and environments of "${k.name}"`,
      message: 'The change applies to the next request. Empty fields clear the list.',
      ok: 'Save',
      fields: [
        el('div', {class: 'field'},
          el('label', {for: 'policy-allowed-ips'}, 'Allowed client addresses (IPs or CIDRs; empty: anywhere)'),
          el('input', {id: 'policy-allowed-ips', name: 'allowed_ips', type: 'text', autocomplete: 'off', spellcheck: 'false',
            value: (k.allowed_ips || []).join(', ')})),
        el('div', {class: 'field'},
          el('label', {for: 'policy-environments'}, 'Environments (empty: only handlers without one)'),
          el('input', {id: 'policy-environments', name: 'environments', type: 'text', autocomplete: 'off', spellcheck: 'false',
            value: (k.environments || []).join(', ')})),
      ],
      action: (v) => api('PATCH', '/keys/' + enc(k.id), {
        allowed_ips: splitList(v.allowed_ips || ''), environments: splitList(v.environments || '')}),
    });
    if (r) {
      flash(`Saved the addresses and environments of "${k.name}".`, 'ok');
      loadDetail(k.id);
    }
  });

  $('detail-revoke').addEventListener('click', async () => {
    const k = current;
    const r = await confirm({
      title: `Revoke "${k.name}"?`,
      message: [el('strong', {}, `Integrations using "${k.name}" (${k.user}) get 401 from now on.`),
        ' The key stays listed for the audit trail. This cannot be undone.'],
      ok: 'Revoke key',
      action: () => api('DELETE', '/keys/' + enc(k.id)),
    });
    if (r) {
      flash(`Revoked "${k.name}".`, 'ok');
      loadDetail(k.id);
    }
  });

  async function revokeUser(user) {
    const msg = (v) => v.user
      ? [el('strong', {}, `Every key of run-as user ${v.user} stops working at once.`),
        ' Integrations using them get 401. This cannot be undone.']
      : 'Enter the run-as user whose keys are to be revoked.';
    const r = await confirm({
      title: 'Revoke all keys of a user?',
      message: msg({user: user || ''}),
      ok: 'Revoke all keys',
      fields: [el('div', {class: 'field'},
        el('label', {for: 'revoke-user-name'}, 'Run-as user'),
        el('input', {id: 'revoke-user-name', name: 'user', type: 'text', autocomplete: 'off', value: user || '', required: true}))],
      onInput: msg,
      action: async (v) => {
        if (!v.user) throw new ApiError(400, 'invalid_request', 'Enter the run-as user.');
        const res = await api('DELETE', '/users/' + enc(v.user));
        return {user: v.user, revoked: res.revoked};
      },
    });
    if (r) {
      flash(`Revoked ${r.revoked} key${r.revoked === 1 ? '' : 's'} of ${r.user}.`, 'ok');
      route();
    }
  }
  $('revoke-user-open').addEventListener('click', () => revokeUser($('f-user').value.trim()));

  // ---------- start ----------

  window.addEventListener('hashchange', () => {
    // A message survives the navigation that follows its action, not more.
    if (Date.now() - flashAt > 1500) flash('');
    route();
  });

  async function boot() {
    const key = sessionStorage.getItem(STORE);
    if (key) {
      try {
        await signIn(key);
      } catch (e) {
        if (e.status !== 401) flash('Could not restore the session: ' + e.message, 'error');
      }
    }
    route();
  }
  boot();
})();
