// goagent live run view. Plain JavaScript, no dependencies: see the Go
// package documentation (internal/webui) for the WebSocket protocol.
'use strict';
(() => {
  const S = {
    ws: null,
    backoff: 500,
    server: null,
    runs: new Map(),          // plan id → Run
    route: { run: null, step: null },
    picked: false,            // the user chose the step: do not follow the running one
    snap: null,               // { id, run, jobs: Map(job id → { job, records: Map }) }
    con: { step: null, gen: '', last: 0 },
    dirty: false,
  };

  // ---- DOM helpers -------------------------------------------------------
  const $ = (sel, el = document) => el.querySelector(sel);
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('data-')) el.setAttribute(k, v);
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const kid of kids.flat()) {
      if (kid == null || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  // ---- formatting -------------------------------------------------------
  const RESULT_TEXT = {
    succeeded: 'Succeeded', succeededWithIssues: 'Partially succeeded', failed: 'Failed',
    canceled: 'Canceled', skipped: 'Skipped', abandoned: 'Abandoned',
  };
  const STATE_TEXT = { pending: 'Pending', inProgress: 'Running', queued: 'Queued', assigned: 'Starting', running: 'Running', completed: 'Completed' };

  // status is the key icons and colours use: a result once done, else the state.
  function status(state, result) {
    if (state === 'completed' || state === 'abandoned') return result || 'succeeded';
    if (state === 'inProgress' || state === 'running' || state === 'assigned') return 'running';
    return 'pending';
  }
  function statusText(state, result) {
    const st = status(state, result);
    return st === 'running' ? 'Running' : st === 'pending' ? (STATE_TEXT[state] || 'Pending') : (RESULT_TEXT[st] || st);
  }
  function icon(st, extra) {
    return h('span', { class: `ico ico-${st}${extra ? ' ' + extra : ''}`, 'aria-label': st, role: 'img' });
  }
  function ms(t) { return t ? Date.parse(t) : NaN; }
  function dur(a, b) {
    let s = Math.max(0, Math.round(((isNaN(b) ? Date.now() : b) - a) / 1000));
    if (isNaN(s)) return '';
    const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60);
    s %= 60;
    if (hh) return `${hh}h ${String(mm).padStart(2, '0')}m`;
    if (mm) return `${mm}m ${String(s).padStart(2, '0')}s`;
    return `${s}s`;
  }
  // live durations tick once a second
  function durEl(start, finish) {
    const a = ms(start), b = ms(finish);
    if (isNaN(a)) return h('span', { class: 'dur' });
    const el = h('span', { class: 'dur', text: dur(a, b) });
    if (isNaN(b)) el.dataset.since = String(a);
    return el;
  }
  setInterval(() => {
    for (const el of document.querySelectorAll('[data-since]')) el.textContent = dur(+el.dataset.since, NaN);
  }, 1000);
  function clock(t) {
    const d = new Date(t);
    return isNaN(d) ? '' : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
  }
  function shortId(id) { return id ? id.slice(0, 8) : ''; }

  // ---- routing ----------------------------------------------------------
  const GUID = '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}';
  const ROUTE = new RegExp(`^#/runs/(${GUID})(?:/(${GUID}))?$`);
  function parseHash() {
    const m = ROUTE.exec(location.hash);
    return m ? { run: m[1].toLowerCase(), step: m[2] ? m[2].toLowerCase() : null } : { run: null, step: null };
  }
  function onRoute() {
    const r = parseHash();
    if (r.run !== S.route.run) S.snap = null;
    S.route = r;
    S.picked = !!r.step;
    if (r.step !== S.con.step) resetConsole(r.step);
    render();
    sendWatch();
  }
  window.addEventListener('hashchange', onRoute);

  // selectStep follows the running step without adding history entries.
  function selectStep(id) {
    if (!S.route.run || id === S.route.step) return;
    S.route.step = id;
    history.replaceState(null, '', `#/runs/${S.route.run}/${id}`);
    resetConsole(id);
    render();
    sendWatch();
  }

  // ---- connection -------------------------------------------------------
  function setConn(state, text) {
    const el = $('#conn');
    el.dataset.state = state;
    el.textContent = text;
  }
  function connect() {
    const url = new URL('ws', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(url);
    S.ws = ws;
    setConn('connecting', 'connecting…');
    ws.onopen = () => { S.backoff = 500; setConn('live', 'live'); sendWatch(); };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      handle(m);
    };
    ws.onclose = () => {
      if (S.ws !== ws) return;
      S.ws = null;
      setConn('offline', 'reconnecting…');
      setTimeout(connect, S.backoff);
      S.backoff = Math.min(S.backoff * 2, 5000);
    };
  }
  function sendWatch() {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return;
    const w = { type: 'watch' };
    if (S.route.run) w.run = S.route.run;
    if (S.route.run && S.con.step) {
      w.step = S.con.step;
      w.after = S.con.last;
      if (S.con.gen) w.gen = S.con.gen;
    }
    S.ws.send(JSON.stringify(w));
  }

  // ---- messages ---------------------------------------------------------
  function handle(m) {
    switch (m.type) {
      case 'hello':
        if (S.server && S.server !== m.server) resetConsole(S.con.step);
        S.server = m.server;
        break;
      case 'runs':
        S.runs = new Map(m.runs.map((r) => [r.id, r]));
        if (S.snap && S.runs.has(S.snap.id)) S.snap.run = S.runs.get(S.snap.id);
        schedule();
        break;
      case 'run':
        S.runs.set(m.run.id, m.run);
        if (S.snap && S.snap.id === m.run.id) S.snap.run = m.run;
        schedule();
        break;
      case 'snapshot': {
        if (m.id !== S.route.run) break;
        const jobs = new Map();
        for (const j of m.jobs) {
          const records = new Map((j.records || []).map((r) => [r.id, r]));
          delete j.records;
          jobs.set(j.id, { job: j, records });
        }
        S.snap = { id: m.id, run: m.run, jobs };
        if (m.run) S.runs.set(m.run.id, m.run);
        schedule();
        break;
      }
      case 'job':
        if (!S.snap || m.run !== S.snap.id) break;
        if (S.snap.jobs.has(m.job.id)) S.snap.jobs.get(m.job.id).job = m.job;
        else S.snap.jobs.set(m.job.id, { job: m.job, records: new Map() });
        schedule();
        break;
      case 'record': {
        if (!S.snap || m.run !== S.snap.id) break;
        let j = S.snap.jobs.get(m.job);
        if (!j) { j = { job: { id: m.job, name: m.record.name, state: 'running' }, records: new Map() }; S.snap.jobs.set(m.job, j); }
        j.records.set(m.record.id, m.record);
        schedule();
        break;
      }
      case 'lines':
        onLines(m);
        break;
      case 'error':
        console.warn('goagent web UI: the server refused a message:', m.error);
        break;
      case 'resync':
        // runs and snapshot follow and replace what we have
        break;
    }
  }

  // Re-rendering the lists is cheap; coalesce bursts into one frame.
  function schedule() {
    if (S.dirty) return;
    S.dirty = true;
    requestAnimationFrame(() => { S.dirty = false; render(); });
  }

  // ---- console ----------------------------------------------------------
  const TAG = /^##\[(group|endgroup|section|command|error|warning|debug)\]/i;
  // Tasks print the commands they run as "[command]…" (azure-pipelines-task-lib).
  const CMD = /^\[command\]/;
  const con = { el: null, group: null, step: null };

  function resetConsole(step) {
    S.con = { step, gen: '', last: 0 };
    con.group = null;
    con.step = step;
    if (con.el) con.el.replaceChildren();
  }

  function onLines(m) {
    if (m.step !== S.con.step) return;
    if (m.reset) {
      S.con.last = 0;
      con.group = null;
      if (con.el) con.el.replaceChildren();
    }
    if (m.first !== S.con.last + 1) {
      // Cannot happen with a server that keeps the protocol; ask afresh.
      console.warn(`goagent web UI: console lines ${m.first}… do not follow ${S.con.last}; resynchronising`);
      resetConsole(S.con.step);
      sendWatch();
      return;
    }
    S.con.gen = m.gen;
    const host = consoleEl();
    const stick = host && host.scrollHeight - host.scrollTop - host.clientHeight < 40;
    m.lines.forEach((text, i) => addLine(m.first + i, text));
    S.con.last = m.first + m.lines.length - 1;
    const empty = host && host.querySelector('.con-empty');
    if (empty && S.con.last > 0) empty.remove();
    if (host && stick) host.scrollTop = host.scrollHeight;
  }

  function consoleEl() { return con.el; }

  function addLine(n, raw) {
    if (!con.el) return;
    const text = raw.replace(/\r$/, '');
    const m = TAG.exec(text) || CMD.exec(text);
    const tag = m ? (m[1] || 'command').toLowerCase() : '';
    const body = m ? text.slice(m[0].length) : text;
    if (tag === 'endgroup') {
      if (con.group) {
        const g = con.group;
        con.group = null;
        if (!g.dataset.touched && !g.querySelector('.ln-error')) g.open = false;
      }
      return;
    }
    if (tag === 'group') {
      const g = h('details', { class: 'grp', open: true });
      g.addEventListener('toggle', () => { g.dataset.touched = '1'; });
      g.append(h('summary', { class: 'ln ln-group' }, h('span', { class: 'no', text: n }), h('span', { class: 'tx' }, ansi(body))));
      g.append(h('div', { class: 'grp-b' }));
      (con.group ? con.group.lastChild : con.el).append(g);
      con.group = g;
      return;
    }
    const line = h('div', { class: 'ln' + (tag ? ` ln-${tag}` : '') }, h('span', { class: 'no', text: n }), h('span', { class: 'tx' }, ansi(body)));
    (con.group ? con.group.lastChild : con.el).append(line);
    if (tag === 'error' && con.group) con.group.open = true;
  }

  // ansi renders SGR colour codes (30–37, 90–97, bold) and drops other
  // escape sequences, as the Azure DevOps log view does.
  const ESC = /\x1b\[([0-9;]*)([A-Za-z])/g;
  function ansi(s) {
    if (!s.includes('\x1b')) return document.createTextNode(s);
    const frag = document.createDocumentFragment();
    let fg = null, bold = false, at = 0, m;
    const emit = (t) => {
      if (!t) return;
      if (!fg && !bold) { frag.append(t); return; }
      frag.append(h('span', { class: [fg ? `a-${fg}` : '', bold ? 'a-b' : ''].join(' ').trim(), text: t }));
    };
    ESC.lastIndex = 0;
    while ((m = ESC.exec(s))) {
      emit(s.slice(at, m.index));
      at = ESC.lastIndex;
      if (m[2] !== 'm') continue;
      for (const p of (m[1] || '0').split(';').map(Number)) {
        if (p === 0) { fg = null; bold = false; } else if (p === 1) bold = true;
        else if (p === 22) bold = false;
        else if (p === 39) fg = null;
        else if ((p >= 30 && p <= 37) || (p >= 90 && p <= 97)) fg = String(p);
      }
    }
    emit(s.slice(at));
    return frag;
  }

  // ---- rendering --------------------------------------------------------
  // The views are rebuilt from state on every change and then merged into
  // the live DOM node by node (morph), so that nodes under the pointer, text
  // selections and scroll positions survive live updates. The console is
  // filled incrementally and lives in a slot morph leaves alone.
  function morph(a, b) {
    if (a.nodeType !== b.nodeType || a.nodeName !== b.nodeName) { a.replaceWith(b); return; }
    if (a.nodeType !== Node.ELEMENT_NODE) {
      if (a.nodeValue !== b.nodeValue) a.nodeValue = b.nodeValue;
      return;
    }
    for (const { name } of [...a.attributes]) if (!b.hasAttribute(name)) a.removeAttribute(name);
    for (const { name, value } of b.attributes) if (a.getAttribute(name) !== value) a.setAttribute(name, value);
    if (a.dataset.slot !== undefined) return;
    const ak = [...a.childNodes], bk = [...b.childNodes];
    bk.forEach((kid, i) => { if (i < ak.length) morph(ak[i], kid); else a.append(kid); });
    for (let i = bk.length; i < ak.length; i++) ak[i].remove();
  }
  function show(tree) {
    const main = $('#main');
    if (main.childNodes.length === 1 && main.firstChild.nodeName === tree.nodeName) morph(main.firstChild, tree);
    else main.replaceChildren(tree);
    const slot = main.querySelector('[data-slot="console"]');
    if (slot && con.el && con.el.parentNode !== slot) slot.append(con.el);
  }

  function render() {
    const crumbs = $('#crumbs');
    if (!S.route.run) {
      document.title = 'goagent · runs';
      morphKids(crumbs, [h('span', { text: 'Runs' })]);
      show(renderRuns());
      return;
    }
    const run = (S.snap && S.snap.run) || S.runs.get(S.route.run);
    document.title = `goagent · ${run ? run.name : 'run'}`;
    morphKids(crumbs, [h('a', { href: '#/', text: 'Runs' }), h('span', { class: 'sep', text: '›' }), h('span', { text: run ? run.name : shortId(S.route.run) })]);
    if (!S.snap) {
      show(h('p', { class: 'empty', text: 'Waiting for the run…' }));
      return;
    }
    autoFollow();
    renderRun(run);
  }
  function morphKids(el, kids) {
    const tmp = el.cloneNode(false);
    tmp.append(...kids);
    morph(el, tmp);
  }

  function renderRuns() {
    const runs = [...S.runs.values()].reverse();
    if (!runs.length) return h('p', { class: 'empty', text: 'No runs yet. Queue a pipeline and it shows up here.' });
    return h('section', { class: 'runs' },
      h('h1', { text: 'Runs' }),
      h('div', { class: 'table' },
        h('div', { class: 'row head' }, h('span', { text: '' }), h('span', { text: 'Run' }), h('span', { text: 'Jobs' }), h('span', { text: 'Issues' }), h('span', { text: 'Started' }), h('span', { text: 'Duration' })),
        runs.map((r) => h('a', { class: 'row run-row', href: `#/runs/${r.id}`, 'data-run': r.id, 'data-state': r.state, 'data-result': r.result || '' },
          icon(status(r.state, r.result)),
          h('span', { class: 'name' }, h('strong', { text: r.name }), r.pipeline ? h('span', { class: 'muted', text: ` · ${r.pipeline}` }) : null,
            h('span', { class: `pill pill-${status(r.state, r.result)}`, text: statusText(r.state, r.result) })),
          h('span', { text: `${r.done}/${r.jobs}` }),
          h('span', {}, issueCounts(r.errors, r.warnings) || h('span', { class: 'muted', text: '—' })),
          h('span', { class: 'muted', text: r.started ? clock(r.started) : (r.queued ? 'queued ' + clock(r.queued) : '') }),
          r.started ? durEl(r.started, r.finished) : h('span')))));
  }

  function issueCounts(errors, warnings) {
    if (!errors && !warnings) return null;
    return h('span', { class: 'counts' },
      errors ? h('span', { class: 'cnt cnt-error', title: `${errors} error(s)`, text: `✖ ${errors}` }) : null,
      warnings ? h('span', { class: 'cnt cnt-warning', title: `${warnings} warning(s)`, text: `▲ ${warnings}` }) : null);
  }

  function jobsSorted() {
    return [...S.snap.jobs.values()].sort((a, b) => (a.job.requestId || 0) - (b.job.requestId || 0));
  }
  function steps(j) {
    return [...j.records.values()].filter((r) => r.id !== j.job.id).sort((a, b) => (a.order - b.order) || a.id.localeCompare(b.id));
  }
  function findRecord(id) {
    for (const j of S.snap.jobs.values()) if (j.records.has(id)) return { j, rec: j.records.get(id) };
    return null;
  }

  function autoFollow() {
    if (S.picked) return;
    let running = null, last = null, failed = null;
    for (const j of jobsSorted()) {
      for (const r of steps(j)) {
        if (r.state === 'inProgress' && !running) running = r;
        if (r.state === 'completed') { last = r; if (r.result === 'failed' && !failed) failed = r; }
      }
    }
    const pick = running || failed || last;
    if (pick && pick.id !== S.route.step) {
      S.route.step = pick.id;
      history.replaceState(null, '', `#/runs/${S.route.run}/${pick.id}`);
      resetConsole(pick.id);
      sendWatch();
    }
  }

  function renderRun(run) {
    // Keep the console element (it is filled incrementally) across renders.
    if (!con.el) con.el = h('div', { class: 'console', id: 'console', role: 'log', 'aria-live': 'off' });
    const st = run ? status(run.state, run.result) : 'pending';
    const head = h('div', { class: 'run-head' },
      icon(st, 'big'),
      h('div', { class: 'titles' },
        h('h1', { text: run ? run.name : shortId(S.snap.id) }),
        h('div', { class: 'muted sub' },
          run && run.pipeline ? `${run.pipeline} · ` : '',
          `run ${shortId(S.snap.id)}`,
          run && run.started ? ` · started ${clock(run.started)}` : '')),
      h('span', { class: `pill pill-${st}`, id: 'run-state', 'data-state': run ? run.state : '', text: run ? statusText(run.state, run.result) : 'Waiting' }),
      run && run.started ? h('span', { class: 'run-dur' }, h('span', { class: 'muted', text: 'Duration ' }), durEl(run.started, run.finished)) : null);

    const timeline = h('nav', { class: 'timeline', 'aria-label': 'jobs and steps' },
      jobsSorted().map((j) => {
        const jr = j.records.get(j.job.id);
        const jst = status(j.job.state === 'completed' || j.job.state === 'abandoned' ? 'completed' : (jr ? jr.state : j.job.state), j.job.result || (jr && jr.result));
        return h('div', { class: 'job', 'data-job': j.job.id },
          h('a', { class: 'rec job-row' + (S.route.step === j.job.id ? ' sel' : ''), href: `#/runs/${S.snap.id}/${j.job.id}`, 'data-record': j.job.id, 'data-state': j.job.state, 'data-result': j.job.result || '', 'data-name': j.job.name },
            icon(jst), h('span', { class: 'name', text: j.job.name }),
            issueCounts(jr && jr.errors, jr && jr.warnings),
            jr ? durEl(jr.start, jr.finish) : h('span', { class: 'dur', text: STATE_TEXT[j.job.state] || '' })),
          steps(j).map((r) => h('a', {
            class: 'rec step' + (S.route.step === r.id ? ' sel' : ''), href: `#/runs/${S.snap.id}/${r.id}`,
            'data-record': r.id, 'data-state': r.state || 'pending', 'data-result': r.result || '', 'data-name': r.name,
          }, icon(status(r.state, r.result)), h('span', { class: 'name', text: r.name }), issueCounts(r.errors, r.warnings), durEl(r.start, r.finish))));
      }));
    if (!S.snap.jobs.size) timeline.append(h('p', { class: 'empty small', text: 'No jobs yet.' }));

    show(h('section', { class: 'run' }, head, renderSummary(run),
      h('div', { class: 'panes' }, timeline, renderConsolePane())));
    const note = con.el.querySelector('.con-empty');
    if (note) note.remove();
    if (S.con.last === 0) con.el.append(emptyNote());
  }

  function emptyNote() {
    const f = S.route.step && findRecord(S.route.step);
    const r = f && f.rec;
    const text = !S.route.step ? 'Pick a step to see its console.'
      : r && r.state === 'completed' ? (r.type === 'Job' ? 'The job’s console is the consoles of its steps: pick a step.' : 'This step printed nothing to the live console.')
        : 'Waiting for output…';
    return h('div', { class: 'con-empty', text });
  }

  function renderConsolePane() {
    const f = S.route.step && findRecord(S.route.step);
    const r = f && f.rec;
    const head = h('div', { class: 'con-head' },
      r ? icon(status(r.state, r.result)) : null,
      h('strong', { class: 'con-title', text: r ? r.name : 'Console' }),
      r ? h('span', { class: 'muted', text: statusText(r.state, r.result) }) : null,
      r ? durEl(r.start, r.finish) : null,
      h('span', { class: 'grow' }),
      r && r.log ? h('a', { class: 'rawlog', href: `api/jobs/${f.j.job.id}/logs/${r.id}`, target: '_blank', rel: 'noopener', text: 'View raw log' }) : null);
    const issues = r && r.issues && r.issues.length
      ? h('ul', { class: 'issues' }, r.issues.map((i) => h('li', { class: `issue issue-${i.type}` }, icon(i.type === 'error' ? 'failed' : 'succeededWithIssues', 'small'), h('span', { text: i.message }))))
      : null;
    return h('section', { class: 'con-pane' }, head, issues, h('div', { class: 'con-slot', 'data-slot': 'console' }));
  }

  function renderSummary(run) {
    if (!run || run.state !== 'completed') return null;
    const counts = {};
    const issues = [];
    for (const j of jobsSorted()) {
      const res = j.job.result || 'unknown';
      counts[res] = (counts[res] || 0) + 1;
      for (const r of j.records.values()) for (const i of r.issues || []) issues.push({ rec: r, i });
    }
    const jobsText = Object.entries(counts).map(([res, n]) => `${n} ${(RESULT_TEXT[res] || res).toLowerCase()}`).join(', ');
    const st = status(run.state, run.result);
    return h('section', { class: `summary summary-${st}`, id: 'summary', 'data-result': run.result || '' },
      h('div', { class: 'sum-main' }, icon(st, 'big'), h('div', {},
        h('div', { class: 'sum-result', text: RESULT_TEXT[run.result] || run.result }),
        h('div', { class: 'muted', text: `Run summary · finished ${clock(run.finished)}` }))),
      h('dl', { class: 'facts' },
        h('div', {}, h('dt', { text: 'Duration' }), h('dd', { id: 'sum-duration', text: run.started ? dur(ms(run.started), ms(run.finished)) : '—' })),
        h('div', {}, h('dt', { text: 'Jobs' }), h('dd', { id: 'sum-jobs', text: `${run.done} of ${run.jobs}: ${jobsText}` })),
        h('div', {}, h('dt', { text: 'Errors' }), h('dd', { id: 'sum-errors', class: run.errors ? 'c-error' : '', text: String(run.errors) })),
        h('div', {}, h('dt', { text: 'Warnings' }), h('dd', { id: 'sum-warnings', class: run.warnings ? 'c-warning' : '', text: String(run.warnings) }))),
      issues.length ? h('ul', { class: 'issues' }, issues.map(({ rec, i }) =>
        h('li', { class: `issue issue-${i.type}` }, icon(i.type === 'error' ? 'failed' : 'succeededWithIssues', 'small'),
          h('a', { href: `#/runs/${S.snap.id}/${rec.id}`, text: rec.name }), h('span', { text: ` ${i.message}` })))) : null);
  }

  onRoute();
  connect();
})();
