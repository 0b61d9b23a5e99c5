// posetracker viewer: plays a result over its video on a canvas, with the track timeline and the
// evaluation's events. Plain script, no build step; the data sits in <script id="data"> (see
// posetracker/app/viewer/data.py for its layout). window.viewer exposes the state for tests.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("data").textContent);
  const ABSENT = -32768;
  const TRAIL = 15;  // frames of history a trail shows
  const ROW = 14;  // timeline row height, CSS pixels
  const media = DATA.media;
  const n = media.num_frames;
  const fps = media.fps;
  const $ = (id) => document.getElementById(id);

  // ---- data -------------------------------------------------------------------------------
  function buffer(b64) {
    const s = atob(b64);
    const u = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
    return u.buffer;
  }

  function decodeSide(side) {
    if (!side) return null;
    const count = new Uint16Array(buffer(side.count));
    const start = new Uint32Array(count.length + 1);
    for (let f = 0; f < count.length; f++) start[f + 1] = start[f] + count[f];
    return {
      k: side.k, edges: side.schema.edges, joints: side.schema.joints, start: start,
      tid: new Int32Array(buffer(side.tid)), xy: new Int16Array(buffer(side.xy)),
      score: new Uint8Array(buffer(side.score)), box: new Int16Array(buffer(side.box)),
    };
  }

  const pred = decodeSide(DATA.pred);
  const gt = decodeSide(DATA.gt);
  const tracks = DATA.tracks;
  const events = DATA.events;
  const eventsAt = new Map();  // frame -> events of that frame
  for (const e of events) {
    if (!eventsAt.has(e.frame)) eventsAt.set(e.frame, []);
    eventsAt.get(e.frame).push(e);
  }

  // ---- state ------------------------------------------------------------------------------
  const state = {
    frame: 0, threshold: 0, follow: null, playing: false, ready: false, readyMs: null,
    mediaReadyMs: null, show: { ids: true, boxes: false, trails: false, gt: true },
    drawn: null, play: { frames: 0, skipped: 0, startMs: 0, endMs: 0, drawMsMax: 0, drawMsSum: 0 },
    counts: DATA.counts, errors: [],
  };

  function colour(id, alpha) {
    const hue = id < 0 ? 0 : (id * 137.508) % 360;
    const sat = id < 0 ? 0 : 80;
    return "hsla(" + hue.toFixed(1) + "," + sat + "%,55%," + alpha + ")";
  }

  // ---- drawing ----------------------------------------------------------------------------
  const canvas = $("overlay");
  canvas.width = media.width;
  canvas.height = media.height;
  const ctx = canvas.getContext("2d");
  const lineWidth = Math.max(2, Math.round(media.width / 400));

  // The score threshold applies to predictions only: ground truth is drawn whole.
  function visible(side, r, j) {
    const x = side.xy[(r * side.k + j) * 2];
    return x !== ABSENT && (side === gt || side.score[r * side.k + j] >= state.threshold * 255 - 1e-6);
  }

  function findRecord(side, f, id) {
    for (let r = side.start[f]; r < side.start[f + 1]; r++) if (side.tid[r] === id) return r;
    return -1;
  }

  function centre(side, r) {
    const b = side.box;
    if (b[r * 4] !== ABSENT && b[r * 4 + 2] !== ABSENT) {
      return [(b[r * 4] + b[r * 4 + 2]) / 2, (b[r * 4 + 1] + b[r * 4 + 3]) / 2];
    }
    let sx = 0, sy = 0, m = 0;
    for (let j = 0; j < side.k; j++) {
      const x = side.xy[(r * side.k + j) * 2];
      if (x !== ABSENT) { sx += x; sy += side.xy[(r * side.k + j) * 2 + 1]; m++; }
    }
    return m ? [sx / m, sy / m] : null;
  }

  // One person: its edges and joints above the threshold; returns the joints drawn.
  function drawPerson(side, r, stroke, width, dash) {
    const k = side.k, xy = side.xy;
    ctx.strokeStyle = stroke;
    ctx.fillStyle = stroke;
    ctx.lineWidth = width;
    ctx.setLineDash(dash);
    ctx.beginPath();
    for (const [a, b] of side.edges) {
      if (visible(side, r, a) && visible(side, r, b)) {
        ctx.moveTo(xy[(r * k + a) * 2], xy[(r * k + a) * 2 + 1]);
        ctx.lineTo(xy[(r * k + b) * 2], xy[(r * k + b) * 2 + 1]);
      }
    }
    ctx.stroke();
    ctx.setLineDash([]);
    let joints = 0;
    for (let j = 0; j < k; j++) {
      if (!visible(side, r, j)) continue;
      ctx.beginPath();
      ctx.arc(xy[(r * k + j) * 2], xy[(r * k + j) * 2 + 1], width * 1.2, 0, 2 * Math.PI);
      ctx.fill();
      joints++;
    }
    return joints;
  }

  function drawBox(side, r, stroke, width) {
    const b = side.box;
    if (b[r * 4] === ABSENT) return;
    ctx.strokeStyle = stroke;
    ctx.lineWidth = width;
    ctx.strokeRect(b[r * 4], b[r * 4 + 1], b[r * 4 + 2] - b[r * 4], b[r * 4 + 3] - b[r * 4 + 1]);
  }

  function drawTrail(r, f, stroke) {
    const id = pred.tid[r];
    if (id < 0) return;
    ctx.strokeStyle = stroke;
    ctx.lineWidth = lineWidth;
    ctx.beginPath();
    let moved = false;
    for (let g = Math.max(0, f - TRAIL); g <= f; g++) {
      const q = g === f ? r : findRecord(pred, g, id);
      const c = q >= 0 ? centre(pred, q) : null;
      if (!c) continue;
      if (moved) ctx.lineTo(c[0], c[1]); else ctx.moveTo(c[0], c[1]);
      moved = true;
    }
    ctx.stroke();
  }

  function drawEvents(f) {
    const kinds = { switch: "#f0c040", miss: "#ff5050", fp: "#50a0ff" };
    for (const e of eventsAt.get(f) || []) {
      const side = e.kind === "miss" ? gt : pred;
      const id = e.kind === "miss" ? e.gt : e.pred;
      if (id === null || !side) continue;
      const r = findRecord(side, f, id);
      if (r >= 0) drawBox(side, r, kinds[e.kind], lineWidth * 1.5);
    }
  }

  function draw(f) {
    const t = performance.now();
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const drawn = { frame: f, skeletons: 0, joints: 0, gtSkeletons: 0, gtJoints: 0 };
    if (gt && state.show.gt) {
      for (let r = gt.start[f]; r < gt.start[f + 1]; r++) {
        const j = drawPerson(gt, r, "rgba(255,255,255,0.85)", Math.max(1, lineWidth / 2), [6, 4]);
        if (j) { drawn.gtSkeletons++; drawn.gtJoints += j; }
      }
    }
    ctx.font = Math.max(12, lineWidth * 7) + "px sans-serif";
    for (let r = pred.start[f]; r < pred.start[f + 1]; r++) {
      const id = pred.tid[r];
      const alpha = state.follow === null || state.follow === id ? 1 : 0.25;
      const c = colour(id, alpha);
      if (state.show.trails) drawTrail(r, f, colour(id, alpha * 0.7));
      const j = drawPerson(pred, r, c, lineWidth, []);
      if (j) { drawn.skeletons++; drawn.joints += j; }
      if (state.show.boxes) drawBox(pred, r, c, lineWidth / 2);
      if (state.show.ids && id >= 0 && j) {
        const p = centre(pred, r);
        const b = pred.box;
        const y = b[r * 4 + 1] !== ABSENT ? b[r * 4 + 1] - 4 : p[1];
        ctx.fillStyle = c;
        ctx.fillText(String(id), b[r * 4] !== ABSENT ? b[r * 4] : p[0], y);
      }
    }
    if (gt) drawEvents(f);
    state.drawn = drawn;
    const ms = performance.now() - t;
    if (state.playing) {
      state.play.drawMsMax = Math.max(state.play.drawMsMax, ms);
      state.play.drawMsSum += ms;
    }
  }

  // ---- media and playback -----------------------------------------------------------------
  const stage = $("stage");
  const isVideo = media.kind === "video";
  const el = document.createElement(isVideo ? "video" : "img");
  stage.insertBefore(el, canvas);
  const mediaReady = () => { if (state.mediaReadyMs === null) state.mediaReadyMs = performance.now(); };
  if (isVideo) {
    el.muted = true;
    el.preload = "auto";
    el.playsInline = true;
    el.addEventListener("loadeddata", mediaReady);
    el.addEventListener("error", () => state.errors.push("cannot play " + media.src));
    el.src = media.src;
  } else {
    el.width = media.width;
    el.height = media.height;
    el.addEventListener("load", mediaReady);
  }

  // Frame shown at media time t: a frame's own timestamp is i / fps (requestVideoFrameCallback
  // gives it exactly, so round); currentTime lies inside the frame (floor).
  function frameAt(t, exact) {
    const f = exact ? Math.round(t * fps) : Math.floor(t * fps + 1e-6);
    return Math.max(0, Math.min(n - 1, f));
  }

  function show(f) {
    if (state.playing && f !== state.frame) {
      state.play.frames++;
      if (f > state.frame + 1) state.play.skipped += f - state.frame - 1;
    }
    state.frame = f;
    if (!isVideo) el.src = media.srcs[f];
    draw(f);
    updateCounter();
  }

  function seek(f) {
    f = Math.max(0, Math.min(n - 1, Math.round(f)));
    if (isVideo) el.currentTime = (f + 0.5) / fps;
    show(f);
    if (state.playing && !isVideo) { playFrom = f; playT0 = performance.now(); }
  }

  let playFrom = 0, playT0 = 0;
  function tick(now) {
    if (!state.playing) return;
    if (isVideo) {
      if (!("requestVideoFrameCallback" in el)) show(frameAt(el.currentTime, false));
    } else {
      const f = playFrom + Math.floor((now - playT0) * fps / 1000);
      if (f >= n) { pause(); return; }
      if (f !== state.frame) show(f);
    }
    requestAnimationFrame(tick);
  }

  if (isVideo && "requestVideoFrameCallback" in el) {
    const onFrame = (now, meta) => {
      if (!el.seeking) show(frameAt(meta.mediaTime, true));
      el.requestVideoFrameCallback(onFrame);
    };
    el.requestVideoFrameCallback(onFrame);
  } else if (isVideo) {
    el.addEventListener("timeupdate", () => { if (!state.playing) show(frameAt(el.currentTime, false)); });
  }

  function play() {
    if (state.playing) return;
    if (state.frame >= n - 1) seek(0);
    state.playing = true;
    state.play = { frames: 0, skipped: 0, startMs: performance.now(), endMs: 0, drawMsMax: 0, drawMsSum: 0 };
    if (isVideo) {
      el.play().catch((e) => state.errors.push("play: " + e));
      el.addEventListener("ended", pause, { once: true });
    } else {
      playFrom = state.frame;
      playT0 = performance.now();
    }
    $("play").textContent = "pause";
    requestAnimationFrame(tick);
  }

  function pause() {
    if (!state.playing) return;
    state.playing = false;
    state.play.endMs = performance.now();
    if (isVideo) el.pause();
    $("play").textContent = "play";
  }

  // ---- controls ---------------------------------------------------------------------------
  const scrub = $("scrub");
  scrub.max = String(n - 1);
  function updateCounter() {
    $("counter").textContent = "frame " + state.frame + " / " + (n - 1);
    scrub.value = String(state.frame);
    drawCursor();
  }
  scrub.addEventListener("input", () => seek(Number(scrub.value)));
  $("play").addEventListener("click", () => (state.playing ? pause() : play()));
  $("prev").addEventListener("click", () => { pause(); seek(state.frame - 1); });
  $("next").addEventListener("click", () => { pause(); seek(state.frame + 1); });
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" && e.target.type !== "checkbox") return;
    const keys = { " ": () => (state.playing ? pause() : play()),
      ArrowLeft: () => { pause(); seek(state.frame - 1); }, ",": () => { pause(); seek(state.frame - 1); },
      ArrowRight: () => { pause(); seek(state.frame + 1); }, ".": () => { pause(); seek(state.frame + 1); },
      Home: () => seek(0), End: () => seek(n - 1) };
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });
  for (const name of ["ids", "boxes", "trails", "gt"]) {
    const box = $("show-" + name);
    box.checked = state.show[name];
    box.addEventListener("change", () => { state.show[name] = box.checked; draw(state.frame); });
  }
  if (!gt) { $("gt-toggle").style.display = "none"; $("events-box").style.display = "none"; }
  function setThreshold(t) {
    state.threshold = Number(t);
    $("threshold").value = String(t);
    $("threshold-value").textContent = state.threshold.toFixed(2);
    draw(state.frame);
  }
  $("threshold").addEventListener("input", (e) => setThreshold(e.target.value));

  function follow(id) {
    state.follow = id;
    const t = tracks.find((x) => x.id === id);
    $("follow-label").textContent = t ? "following track " + id + " (frames " + t.first + "-" + t.last +
      ", present in " + t.frames + ")" : "click a timeline row to follow a person";
    $("first").disabled = $("last").disabled = !t;
    drawTimeline();
    if (t) seek(t.first); else draw(state.frame);
  }
  $("first").addEventListener("click", () => { const t = tracks.find((x) => x.id === state.follow); if (t) seek(t.first); });
  $("last").addEventListener("click", () => { const t = tracks.find((x) => x.id === state.follow); if (t) seek(t.last); });

  // ---- events list ------------------------------------------------------------------------
  const kindText = { switch: "ID switch", miss: "miss", fp: "false positive" };
  if (gt) {
    const c = DATA.counts;
    $("counts").textContent = "ID switches " + c.switches + ", misses " + c.misses + ", false positives " +
      c.fps + " (of " + c.objects + " ground-truth joints; each joint counts, as in MOTA)";
    const list = $("events");
    const frag = document.createDocumentFragment();
    for (const e of events) {
      const li = document.createElement("li");
      li.className = e.kind;
      const who = e.kind === "switch" ? "GT " + e.gt + " now track " + e.pred
        : e.kind === "miss" ? (e.gt === null ? "frame without predictions" : "GT " + e.gt)
          : (e.pred === null ? "frame without ground truth" : "track " + e.pred);
      li.textContent = "frame " + e.frame + ": " + kindText[e.kind] + ", " + who + " (" + e.joints.length + " joints)";
      li.title = e.joints.join(", ");
      li.dataset.frame = String(e.frame);
      li.dataset.joints = String(e.joints.length);
      li.addEventListener("click", () => { pause(); seek(e.frame); });
      frag.appendChild(li);
    }
    list.appendChild(frag);
  }
  $("summary").textContent = n + " frames at " + fps.toFixed(2) + " fps, " + media.width + "x" + media.height +
    ", " + tracks.length + " tracks";

  // ---- timeline ---------------------------------------------------------------------------
  // Rows: an events row (with ground truth), then one per track id. A track's row is coloured
  // where the id is present, grey in its gaps, empty outside; ticks mark switches and false
  // positives on the track's row, misses on the events row.
  const tl = $("timeline");
  const tctx = tl.getContext("2d");
  const rowOf = new Map(tracks.map((t, i) => [t.id, i + (gt ? 1 : 0)]));
  const rows = tracks.length + (gt ? 1 : 0);
  let tlStatic = null;

  function drawTimeline() {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(200, tl.clientWidth);
    tl.style.height = rows * ROW + "px";
    tl.width = Math.round(w * dpr);
    tl.height = Math.round(rows * ROW * dpr);
    const off = document.createElement("canvas");
    off.width = tl.width;
    off.height = tl.height;
    const o = off.getContext("2d");
    o.scale(dpr, dpr);
    const x = (f) => (f / n) * w;
    const fw = Math.max(1, w / n);
    const present = new Map(tracks.map((t) => [t.id, new Uint8Array(n)]));
    for (let f = 0; f < n; f++) {
      for (let r = pred.start[f]; r < pred.start[f + 1]; r++) {
        const p = present.get(pred.tid[r]);
        if (p) p[f] = 1;
      }
    }
    tracks.forEach((t, i) => {
      const y = (i + (gt ? 1 : 0)) * ROW;
      if (state.follow === t.id) { o.fillStyle = "#444"; o.fillRect(0, y, w, ROW); }
      o.fillStyle = "#555";
      o.fillRect(x(t.first), y + 5, x(t.last + 1) - x(t.first), ROW - 10);  // gaps show through
      o.fillStyle = colour(t.id, 1);
      const p = present.get(t.id);
      for (let f = t.first; f <= t.last; f++) {
        if (!p[f]) continue;
        let g = f;
        while (g + 1 <= t.last && p[g + 1]) g++;
        o.fillRect(x(f), y + 2, x(g + 1) - x(f), ROW - 4);
        f = g;
      }
    });
    const tickColour = { switch: "#f0c040", miss: "#ff5050", fp: "#50a0ff" };
    for (const e of events) {
      const row = e.kind === "miss" || e.pred === null ? 0 : rowOf.get(e.pred);
      if (row === undefined) continue;
      o.fillStyle = tickColour[e.kind];
      o.fillRect(x(e.frame), row * ROW + (e.kind === "switch" ? 0 : ROW / 2), fw + 1, ROW / 2);
    }
    if (gt) { o.fillStyle = "#aaa"; o.font = "10px sans-serif"; o.fillText("events", 2, 10); }
    tlStatic = off;
    drawCursor();
  }

  function drawCursor() {
    if (!tlStatic) return;
    tctx.setTransform(1, 0, 0, 1, 0, 0);
    tctx.clearRect(0, 0, tl.width, tl.height);
    tctx.drawImage(tlStatic, 0, 0);
    const xc = ((state.frame + 0.5) / n) * tl.width;
    tctx.fillStyle = "#fff";
    tctx.fillRect(Math.floor(xc), 0, Math.max(1, window.devicePixelRatio || 1), tl.height);
  }

  tl.addEventListener("click", (e) => {
    const rect = tl.getBoundingClientRect();
    const row = Math.floor((e.clientY - rect.top) / ROW);
    const frame = Math.floor(((e.clientX - rect.left) / rect.width) * n);
    pause();
    if (gt && row === 0) { seek(frame); return; }
    const t = tracks[row - (gt ? 1 : 0)];
    if (t) follow(t.id);
  });
  window.addEventListener("resize", drawTimeline);

  // ---- start ------------------------------------------------------------------------------
  window.addEventListener("error", (e) => state.errors.push(String(e.message)));
  drawTimeline();
  show(0);
  state.ready = true;
  state.readyMs = performance.now();
  window.viewer = { state: state, seek: seek, play: play, pause: pause, follow: follow,
    setThreshold: setThreshold, frameAt: frameAt, timelineRow: (id) => rowOf.get(id), ROW: ROW };
})();
