// DSA web UI: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  // A <form data-autosubmit> submits when one of its selects changes.
  document.addEventListener("change", (e) => {
    const form = e.target.closest("form[data-autosubmit]");
    if (form && e.target.tagName === "SELECT") form.requestSubmit ? form.requestSubmit() : form.submit();
  });

  // Keyboard: "/" focuses the filter, "n" / "p" next and previous page, "?" lists them.
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName)) return;
    const el = document.querySelector(`[data-hotkey="${CSS.escape(e.key)}"]`);
    if (!el) return;
    e.preventDefault();
    if (el.tagName === "INPUT") el.focus(); else el.click();
  });

  // Upload: drag and drop, upload progress, then the job's server-sent events.
  function humanBytes(n) {
    if (n == null) return "";
    const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
  }

  function setBar(root, fraction, text) {
    const bar = root.querySelector("progress");
    if (fraction == null) bar.removeAttribute("value"); else bar.value = Math.max(0, Math.min(1, fraction));
    root.querySelector("[data-progress-text]").textContent = text;
  }

  function watchJob(root) {
    const jobId = root.dataset.job;
    if (!jobId || !window.EventSource) return;
    const es = new EventSource(`/api/v1/jobs/${jobId}/events`);
    const show = (job) => {
      const p = job.progress || {};
      const f = p.total_bytes ? p.bytes / p.total_bytes : null;
      const state = job.state === "running" ? "Importing" : job.state === "queued" ? "Queued" : job.state;
      setBar(root, f, `${state}: ${(p.rows || 0).toLocaleString()} rows, ${humanBytes(p.bytes)} of ${humanBytes(p.total_bytes)}`);
    };
    es.addEventListener("progress", (e) => show(JSON.parse(e.data)));
    es.addEventListener("end", (e) => {
      es.close();
      const job = JSON.parse(e.data);
      show(job);
      if (job.state === "succeeded") setBar(root, 1, `Done: ${(job.progress.rows || 0).toLocaleString()} rows`);
      // the server renders the outcome (links, or the problem with its location)
      fetch(root.dataset.outcome, { headers: { "HX-Request": "true" } })
        .then((r) => r.text())
        .then((html) => { const out = root.querySelector("[data-outcome-slot]"); out.innerHTML = html; out.focus(); });
    });
    es.onerror = () => { /* the browser reconnects; the end event closes the stream */ };
  }

  function enhanceUpload(form) {
    const drop = form.querySelector(".drop");
    const input = form.querySelector('input[type="file"]');
    const name = form.querySelector("[data-filename]");
    const showName = () => { name.textContent = input.files.length ? `${input.files[0].name} (${humanBytes(input.files[0].size)})` : ""; };
    input.addEventListener("change", showName);
    ["dragenter", "dragover"].forEach((ev) => drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); }));
    ["dragleave", "drop"].forEach((ev) => drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
    drop.addEventListener("drop", (e) => {
      if (e.dataTransfer.files.length) { input.files = e.dataTransfer.files; showName(); }
    });
    form.addEventListener("submit", (e) => {
      if (!input.files.length) return;
      e.preventDefault();
      const status = document.getElementById("upload-status");
      status.hidden = false;
      form.querySelector('button[type="submit"]').disabled = true;
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("X-CSRF-Token", csrf());
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = (ev) => {
        if (ev.lengthComputable) setBar(status, ev.loaded / ev.total, `Uploading: ${humanBytes(ev.loaded)} of ${humanBytes(ev.total)}`);
      };
      xhr.onload = () => {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
        if (xhr.status === 202) {
          status.dataset.job = body.job_id;
          status.dataset.outcome = body.links.outcome;
          history.replaceState(null, "", body.links.page);
          setBar(status, 0, "Queued");
          watchJob(status);
        } else {
          form.querySelector('button[type="submit"]').disabled = false;
          const slot = status.querySelector("[data-outcome-slot]");
          slot.innerHTML = "";
          const p = document.createElement("div");
          p.className = "flash bad"; p.setAttribute("role", "alert");
          p.textContent = body.detail || `Upload failed (${xhr.status})`;
          if (body.errors) {
            const ul = document.createElement("ul");
            body.errors.forEach((er) => { const li = document.createElement("li"); li.textContent = `${er.field}: ${er.message}`; ul.appendChild(li); });
            p.appendChild(ul);
          }
          slot.appendChild(p);
          setBar(status, 0, "Upload refused");
        }
      };
      xhr.onerror = () => { form.querySelector('button[type="submit"]').disabled = false; setBar(status, 0, "Network error: the upload did not reach the server"); };
      xhr.send(new FormData(form));
    });
  }

  // A new API token: select it on focus; a Copy button where the clipboard API exists.
  function enhanceCopy(button) {
    const field = document.querySelector(button.dataset.copy);
    if (!field || !navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", () => {
      navigator.clipboard.writeText(field.value).then(
        () => { button.textContent = "Copied"; },
        () => { field.focus(); field.select(); });
    });
  }

  // No inline handlers (the pages' Content-Security-Policy allows no inline
  // script): a form with data-confirm asks first; a control with
  // data-autosubmit submits its form when changed. Delegated, so what htmx
  // swaps in behaves the same.
  document.addEventListener("submit", (e) => {
    const message = e.target.dataset && e.target.dataset.confirm;
    if (message && !window.confirm(message)) e.preventDefault();
  }, true);
  document.addEventListener("change", (e) => {
    if (e.target.matches && e.target.matches("[data-autosubmit]") && e.target.form) e.target.form.requestSubmit();
  });

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("button[data-copy]").forEach(enhanceCopy);
    document.querySelectorAll("[data-select-on-focus]").forEach((el) => el.addEventListener("focus", () => el.select()));
    document.querySelectorAll("form[data-upload]").forEach(enhanceUpload);
    document.querySelectorAll("[data-job]").forEach((el) => { if (el.dataset.job) watchJob(el); });
  });
})();
