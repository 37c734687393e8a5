/* The chat widget a commune website embeds with one tag:
     <script src="https://BOT-ADDRESS/chat/widget.js" data-hamlet="HAMLET-CODE" async></script>
   It adds a button in the corner that opens the web chat in a frame. Plain ES5, no other file. */
(function () {
  "use strict";
  var TEXTS = /*TEXTS*/{};
  var script = document.currentScript || (function () {
    var all = document.getElementsByTagName("script");
    for (var i = all.length - 1; i >= 0; i--) {
      if (/\/chat\/widget\.js(\?|$)/.test(all[i].src)) { return all[i]; }
    }
    return null;
  })();
  if (!script || window.__cccdChatWidget) { return; }
  window.__cccdChatWidget = true;
  var base = script.src.replace(/\/chat\/widget\.js.*$/, "");
  var hamlet = script.getAttribute("data-hamlet") || "";
  var src = base + "/?embed=1" + (hamlet ? "&h=" + encodeURIComponent(hamlet) : "");

  var open = document.createElement("button");
  open.type = "button";
  open.textContent = TEXTS.widget_open;
  open.setAttribute("aria-expanded", "false");
  open.style.cssText = "position:fixed;right:12px;bottom:12px;z-index:2147483000;padding:12px 16px;font-size:17px;" +
    "border:0;border-radius:24px;background:#1f5fa8;color:#fff;box-shadow:0 2px 8px rgba(0,0,0,.3);cursor:pointer";

  var box = null;
  function toggle() {
    if (!box) {
      box = document.createElement("div");
      box.style.cssText = "position:fixed;right:8px;bottom:70px;z-index:2147483000;width:380px;max-width:calc(100% - 16px);" +
        "height:560px;max-height:calc(100% - 90px);background:#fff;border:1px solid #9aa5b1;border-radius:10px;overflow:hidden;" +
        "box-shadow:0 4px 16px rgba(0,0,0,.3)";
      var frame = document.createElement("iframe");
      frame.src = src;
      frame.title = TEXTS.widget_open;
      frame.style.cssText = "width:100%;height:100%;border:0";
      box.appendChild(frame);
      document.body.appendChild(box);
    } else {
      box.style.display = box.style.display === "none" ? "block" : "none";
    }
    var shown = box.style.display !== "none";
    open.textContent = shown ? TEXTS.widget_close : TEXTS.widget_open;
    open.setAttribute("aria-expanded", shown ? "true" : "false");
  }
  open.onclick = toggle;
  function place() { document.body.appendChild(open); }
  if (document.body) { place(); } else { document.addEventListener("DOMContentLoaded", place); }
})();
