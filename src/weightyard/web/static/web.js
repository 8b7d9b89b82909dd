// Progressive enhancement only: every page works without this script.
// Adds a "Copy" button to code snippets marked with data-copy.
document.querySelectorAll("pre[data-copy]").forEach((pre) => {
  if (!navigator.clipboard) return;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy";
  button.textContent = "Copy";
  button.setAttribute("aria-label", "Copy snippet");
  button.addEventListener("click", async () => {
    await navigator.clipboard.writeText(pre.querySelector("code").textContent);
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
  pre.appendChild(button);
});
