// Following a job to its end: job_update events from the live socket, and the REST answer when
// the socket is away (or the job was quicker than the request that made it).
import { setText } from "./dom.js";
import * as fmt from "./format.js";

const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const POLL_MS = 2000;

export class Jobs {
  #api;
  #live;
  #seen = new Map();
  #watchers = new Map();

  constructor(api, live) {
    this.#api = api;
    this.#live = live;
    live.on("job_update", (message) => this.#update(message.data));
  }

  #update(job) {
    const before = this.#seen.get(job.job_id);
    // Events and REST answers may cross: a final state stands, progress never goes back.
    if (before && FINAL.has(before.state)) return;
    const merged = { ...job, progress: Math.max(job.progress ?? 0, before?.progress ?? 0) };
    this.#seen.set(job.job_id, merged);
    for (const watcher of this.#watchers.get(job.job_id) || []) watcher(merged);
  }

  async #ask(id) {
    const job = await this.#api.get(`/api/v1/jobs/${id}`);
    this.#update({ ...job, job_id: job.id });
    return job;
  }

  /** Call `onUpdate(job)` as job `id` moves; resolves with the final job as GET /jobs/{id} answers it. */
  follow(id, onUpdate) {
    let watcher = null;
    let poll = null;
    const settled = new Promise((resolve, reject) => {
      watcher = (job) => {
        onUpdate(job);
        // An event may leave a big result out: the final answer comes from the API.
        if (FINAL.has(job.state)) this.#api.get(`/api/v1/jobs/${id}`).then(resolve, reject);
      };
      if (!this.#watchers.has(id)) this.#watchers.set(id, new Set());
      this.#watchers.get(id).add(watcher);
      if (this.#seen.has(id)) watcher(this.#seen.get(id));
      this.#ask(id).catch(reject);
      poll = setInterval(() => {
        if (this.#live.state !== "live") this.#ask(id).catch(() => null);
      }, POLL_MS);
    });
    return settled.finally(() => {
      this.#watchers.get(id).delete(watcher);
      clearInterval(poll);
    });
  }
}

/**
 * The export control: `describe()` returns {dataset, query} for the current request; the button starts
 * an export job, the bar shows its progress, and the link downloads the file when it is done.
 */
export function bindExport(root, { api, jobs, describe }) {
  const button = root.querySelector("#export-start");
  const format = root.querySelector("#export-format");
  const progress = root.querySelector("#export-progress");
  const state = root.querySelector("#export-state");
  const link = root.querySelector("#export-link");

  button.addEventListener("click", async () => {
    button.disabled = true;
    link.hidden = true;
    progress.hidden = false;
    progress.value = 0;
    setText(state, "submitting…");
    try {
      const { dataset, query } = describe();
      const accepted = await api.post("/api/v1/analytics/export", { format: format.value, dataset, query });
      const job = await jobs.follow(accepted.job_id, (update) => {
        progress.value = update.progress ?? 0;
        setText(state, `${update.state} · ${Math.round((update.progress ?? 0) * 100)} %`);
      });
      if (job.state !== "succeeded") {
        setText(state, `${job.state}: ${job.error?.message || "no file"}`);
        return;
      }
      const result = job.result;
      progress.value = 1;
      setText(state, `${fmt.number(result.rows, "count")} rows · ${fmt.number(result.bytes, "count")} bytes`);
      // The signed link is the credential: a plain link the browser downloads by itself.
      link.href = result.download_url;
      link.download = result.filename;
      link.rel = "noreferrer";
      setText(link, `Download ${result.filename}`);
      link.hidden = false;
    } catch (error) {
      setText(state, error.message);
    } finally {
      button.disabled = false;
    }
  });
}

