// Progressive enhancement of the console's upload form: send it with XMLHttpRequest to show a
// progress bar, then follow the server's answer (the receipt, or the report of a refused file).
// Without JavaScript the plain form posts the same fields to the same address.
(function () {
  "use strict";
  function enhance() {
    var form = document.getElementById("upload-form");
    var box = document.getElementById("upload-progress");
    var bar = document.getElementById("upload-bar");
    if (!form || !box || !bar || !window.XMLHttpRequest || !window.FormData) {
      return;
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = form.querySelector("button[type=submit]");
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) {
          var percent = Math.round((e.loaded / e.total) * 100);
          bar.value = percent;
          bar.textContent = percent + "%";
        }
      });
      xhr.addEventListener("load", function () {
        if (xhr.responseURL && xhr.responseURL !== form.action) {
          window.location.assign(xhr.responseURL);
          return;
        }
        document.open();
        document.write(xhr.responseText);
        document.close();
      });
      xhr.addEventListener("error", function () {
        box.hidden = true;
        if (button) { button.disabled = false; }
        form.submit();
      });
      box.hidden = false;
      if (button) { button.disabled = true; }
      xhr.send(new FormData(form));
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", enhance);
  } else {
    enhance();
  }
})();
