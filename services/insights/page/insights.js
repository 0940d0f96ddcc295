"use strict";
// The insights page: asks `/v1/insights/report` with the reader's token and shows it.
document.getElementById("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  const params = new URLSearchParams({group_by: document.getElementById("group-by").value});
  const period = document.getElementById("period").value.trim();
  if (period) params.set("period", period);
  const response = await fetch("/v1/insights/report?" + params, {
    headers: {Authorization: "Bearer " + document.getElementById("token").value}});
  const error = document.getElementById("error");
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    error.textContent = problem.detail || ("error " + response.status);
    return;
  }
  error.textContent = "";
  document.getElementById("report").innerHTML = await response.text();
});
