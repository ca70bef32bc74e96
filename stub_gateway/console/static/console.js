// The reviewer console's only script: light polling of each [data-live] region and votes.
// Regions are replaced by HTML the server rendered (autoescaped); text from a task never
// becomes HTML here: messages are set with textContent.
"use strict";

(() => {
  const token = document.querySelector('meta[name="console-token"]')?.content ?? "";

  function connection(ok) {
    const badge = document.getElementById("connection");
    if (badge) badge.textContent = ok ? "" : "gateway unreachable: retrying";
  }

  // A comment being typed survives a refresh of its region.
  function kept(region) {
    const fields = new Map();
    for (const field of region.querySelectorAll("[data-task-id] textarea")) {
      const id = field.closest("[data-task-id]").dataset.taskId;
      fields.set(id, {
        value: field.value,
        focused: document.activeElement === field,
        start: field.selectionStart,
        end: field.selectionEnd,
      });
    }
    return fields;
  }

  function restore(region, fields) {
    for (const field of region.querySelectorAll("[data-task-id] textarea")) {
      const saved = fields.get(field.closest("[data-task-id]").dataset.taskId);
      if (!saved) continue;
      field.value = saved.value;
      if (saved.focused) {
        field.focus();
        field.setSelectionRange(saved.start, saved.end);
      }
    }
  }

  async function refresh(region) {
    const headers = region.dataset.etag ? { "If-None-Match": region.dataset.etag } : {};
    let response;
    try {
      response = await fetch(region.dataset.live, {
        headers,
        cache: "no-store",
        credentials: "same-origin",
      });
    } catch {
      connection(false);
      return;
    }
    connection(response.ok || response.status === 304);
    if (response.status !== 200) return;
    const html = await response.text();
    const fields = kept(region);
    region.innerHTML = html;
    region.dataset.etag = response.headers.get("ETag") ?? "";
    restore(region, fields);
  }

  function poll(region) {
    const every = Number(region.dataset.pollMs) || 1500;
    const tick = async () => {
      if (!document.hidden) await refresh(region);
      setTimeout(tick, every);
    };
    setTimeout(tick, every);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) refresh(region);
    });
  }

  function problem(answer, response) {
    if (typeof answer.error === "string") return answer.error;
    return answer.error?.message ?? `HTTP ${response.status}`;
  }

  function progress(consensus) {
    const c = consensus ?? {};
    return `${c.currentVoteCount} of ${c.requiredVoters} votes (${c.yesVotes} yes, ${c.noVotes} no), phase ${c.phase}`;
  }

  function notice(text, ok) {
    const element = document.getElementById("notice");
    if (!element) return;
    element.textContent = text;
    element.className = ok ? "notice ok" : "notice error";
  }

  async function vote(button) {
    const card = button.closest("[data-task-id]");
    const region = button.closest("[data-live]");
    const id = card.dataset.taskId;
    const comment = card.querySelector("textarea");
    const reviewer = document.getElementById("reviewer")?.value.trim() ?? "";
    const body = { decision: button.dataset.decision };
    if (comment && comment.value.trim()) body.comment = comment.value.trim();
    if (reviewer) body.userId = reviewer;
    const buttons = card.querySelectorAll("button");
    for (const each of buttons) each.disabled = true;
    try {
      const response = await fetch(card.dataset.voteUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-Console-Token": token },
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => ({}));
      if (response.ok) {
        const c = answer.consensus ?? {};
        const verdict = c.reached
          ? `Consensus reached: ${String(c.decision).toUpperCase()}.`
          : "No consensus yet.";
        notice(`Vote recorded on ${id}: ${progress(c)}. ${verdict}`, true);
        if (comment) comment.value = "";
      } else {
        notice(`Vote on ${id} refused: ${problem(answer, response)}`, false);
      }
    } catch (error) {
      notice(`Vote on ${id} not sent: ${error}`, false);
    }
    for (const each of buttons) each.disabled = false;
    if (region) await refresh(region);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-decision]");
    if (button) vote(button);
  });

  for (const region of document.querySelectorAll("[data-live]")) poll(region);
})();
