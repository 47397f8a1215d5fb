// EchoServlet answers every request with what Tomcat resolved it to, as one
// line of JSON: the application (canonical context path), the method, the raw
// request URI, and the servlet path and path info Tomcat decoded and
// normalised. e2e/tomcat_test.go compiles it with javac and deploys it as
// several webapps, so a path that leaves the context keygate judged shows up
// as another application answering.
import java.io.IOException;
import java.io.PrintWriter;
import java.util.concurrent.atomic.AtomicLong;

import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;

public class EchoServlet extends HttpServlet {
    private final AtomicLong served = new AtomicLong();

    @Override
    protected void service(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        long n = served.incrementAndGet();
        String app = req.getServletContext().getContextPath(); // canonical: "" or "/maximo"
        String servletPath = req.getServletPath();
        String pathInfo = req.getPathInfo();
        String resolved = app + servletPath + (pathInfo == null ? "" : pathInfo);
        resp.setStatus(200);
        resp.setContentType("application/json");
        resp.setCharacterEncoding("UTF-8");
        resp.setHeader("X-Echo-App", app.isEmpty() ? "ROOT" : app);
        PrintWriter w = resp.getWriter();
        w.print("{\"echo\":true");
        field(w, "app", app);
        field(w, "method", req.getMethod());
        field(w, "requestURI", req.getRequestURI());
        field(w, "contextPath", req.getContextPath());
        field(w, "servletPath", servletPath);
        field(w, "pathInfo", pathInfo);
        field(w, "resolved", resolved);
        field(w, "payloadId", req.getHeader("X-Payload-Id"));
        w.print(",\"served\":" + n);
        w.print("}\n");
    }

    private static void field(PrintWriter w, String name, String value) {
        w.print(",\"" + name + "\":");
        if (value == null) {
            w.print("null");
            return;
        }
        StringBuilder b = new StringBuilder("\"");
        for (int i = 0; i < value.length(); i++) {
            char c = value.charAt(i);
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20 || c == 0x7f || (c >= 0xd800 && c <= 0xdfff)) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        w.print(b.append('"'));
    }
}
