// The log-in page's form: tursid's control token (over its TLS listener) becomes a session cookie.
"use strict";

document.getElementById("token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = document.getElementById("token-error");
  out.textContent = "";
  const resp = await fetch("/ui/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: document.getElementById("token").value }),
  });
  if (resp.ok) { location.href = "/ui/"; return; }
  let problem = {};
  try { problem = await resp.json(); } catch (e) { problem = { detail: `HTTP ${resp.status}` }; }
  out.textContent = problem.detail || problem.title || `HTTP ${resp.status}`;
});
