// Last of the console's scripts: every page is registered, route the current address.
// (A file, not an inline script: the console's Content-Security-Policy allows only files.)
"use strict";

Console.start();
